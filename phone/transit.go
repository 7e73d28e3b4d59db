package phone

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/nfc"
	"github.com/mipay-oss/mipay/se"
)

// Transit cards in the Mi Wallet app: issue (paid in-app with a bound card
// and the fingerprint), top up (payment first, then the load exchange
// between the SE's e-purse and the agency's load host; an unfinished top-up
// is resumed before anything else), list, history, move to another phone
// of the account, and tap at a gate in express mode (no fingerprint).

// TransitCard is a transit card as the app shows it: the SE's balance and
// the agency's view.
type TransitCard struct {
	City          string `json:"city"`
	CardNumber    string `json:"cardNumber"`
	Label         string `json:"label"`
	BalanceMinor  int64  `json:"balanceMinor"`            // in the SE, now
	Status        string `json:"status,omitempty"`        // the agency's: ACTIVE, HOTLISTED, MOVED
	ShadowBalance int64  `json:"shadowBalanceMinor"`      // the agency's, as of the last cleared tap
	InSE          bool   `json:"inSecureElement"`         // installed on this handset
	PendingLoad   string `json:"pendingLoad,omitempty"`   // an unfinished top-up
	OfflineSerial uint16 `json:"offlineSerial,omitempty"` // taps made
}

// agencyCard is the agency's JSON of a card.
type agencyCard struct {
	CardNumber    string `json:"cardNumber"`
	City          string `json:"city"`
	DeviceID      string `json:"deviceId"`
	Status        string `json:"status"`
	ShadowBalance int64  `json:"shadowBalanceMinor"`
}

// transitLoad is the agency's JSON of a load.
type transitLoad struct {
	ID          string `json:"id"`
	CardNumber  string `json:"cardNumber"`
	Kind        string `json:"kind"`
	AmountMinor int64  `json:"amountMinor"`
	State       string `json:"state"`
	Terminal    string `json:"terminal"`
}

func (p *Phone) agency(base string) (httpx.Client, error) {
	if err := p.requireDevice(); err != nil {
		return httpx.Client{}, err
	}
	if base == "" {
		return httpx.Client{}, mipay.Errorf(mipay.EINVALID, "no transit agency address")
	}
	return httpx.Client{Base: base, Token: p.app.Session}, nil
}

// inAppPay takes the fingerprint and has the payment card's applet make an
// in-app cryptogram for amount. Callers hold mu.
func (p *Phone) inAppPay(ctx context.Context, cardID string, finger Finger, amount int64) (*se.InAppCryptogram, error) {
	_, ref, err := p.payCard(ctx, cardID)
	if err != nil {
		return nil, err
	}
	if !p.matchFinger(finger) {
		return nil, mipay.Errorf(mipay.EFORBIDDEN, "fingerprint not recognised: nothing was paid")
	}
	if err := p.se.Arm(ref); err != nil {
		return nil, err
	}
	var un [4]byte
	if _, err := rand.Read(un[:]); err != nil {
		return nil, err
	}
	c, err := p.se.InAppCryptogram(se.InAppRequest{TokenRef: ref, AmountMinor: amount, Currency: "156", Country: "156", Unpredictable: un})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// TransitIssueOptions is a request for a new transit card.
type TransitIssueOptions struct {
	Agency string // the transit agencies' URL
	City   string
	CardID string // the bound card that pays the fee ("" = default)
	Finger Finger
}

// TransitIssue has the agency issue a card of the city and installs it in
// the SE. A fee is paid in-app with a bound card and the fingerprint.
func (p *Phone) TransitIssue(ctx context.Context, o TransitIssueOptions) (*TransitCard, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.agency(o.Agency)
	if err != nil {
		return nil, err
	}
	var cities struct {
		Cities []struct {
			ID            string `json:"id"`
			IssueFeeMinor int64  `json:"issueFeeMinor"`
		} `json:"cities"`
	}
	if err := c.Do(ctx, "GET", "/v1/cities", nil, &cities); err != nil {
		return nil, err
	}
	fee, found := int64(0), false
	for _, ci := range cities.Cities {
		if ci.ID == o.City {
			fee, found = ci.IssueFeeMinor, true
		}
	}
	if !found {
		return nil, mipay.Errorf(mipay.ENOTFOUND, "no transit city %q", o.City)
	}
	// A card issued to this phone but never installed (the answer was
	// lost): install it again instead of paying twice.
	var mine struct {
		Cards []agencyCard `json:"cards"`
	}
	if err := c.Do(ctx, "GET", "/v1/cards", nil, &mine); err != nil {
		return nil, err
	}
	inSE := map[string]bool{}
	for _, tc := range p.se.TransitCards() {
		inSE[tc.CardNumber] = true
	}
	for _, ac := range mine.Cards {
		if ac.City == o.City && ac.DeviceID == p.app.DeviceID && ac.Status == "ACTIVE" && !inSE[ac.CardNumber] {
			var res struct {
				Profile json.RawMessage `json:"profile"`
			}
			if err := c.Do(ctx, "POST", "/v1/cards/"+url.PathEscape(ac.CardNumber)+"/profile", map[string]any{"sePublicKey": p.se.PublicKey()}, &res); err != nil {
				return nil, err
			}
			tc, err := p.se.InstallTransit(res.Profile)
			if err != nil {
				return nil, err
			}
			return &TransitCard{City: tc.City, CardNumber: tc.CardNumber, Label: tc.Label, BalanceMinor: int64(tc.BalanceMinor), Status: ac.Status, InSE: true}, nil
		}
	}
	req := map[string]any{"deviceId": p.app.DeviceID, "seId": p.se.ID(), "sePublicKey": p.se.PublicKey()}
	if fee > 0 {
		pay, err := p.inAppPay(ctx, o.CardID, o.Finger, fee)
		if err != nil {
			return nil, err
		}
		req["payment"] = pay
	}
	var res struct {
		Card    agencyCard      `json:"card"`
		Profile json.RawMessage `json:"profile"`
	}
	if err := c.Do(ctx, "POST", "/v1/cities/"+url.PathEscape(o.City)+"/cards", req, &res); err != nil {
		return nil, err
	}
	tc, err := p.se.InstallTransit(res.Profile)
	if err != nil {
		return nil, err
	}
	return &TransitCard{City: tc.City, CardNumber: tc.CardNumber, Label: tc.Label, BalanceMinor: int64(tc.BalanceMinor), Status: res.Card.Status, InSE: true}, nil
}

// TransitTopUpOptions is a top-up.
type TransitTopUpOptions struct {
	Agency      string
	CardNumber  string // "" = the only transit card
	AmountMinor int64
	CardID      string // the bound card that pays ("" = default)
	Finger      Finger
}

// TransitTopUp finishes any unfinished top-up of the card, then pays and
// loads the amount. It returns the card's new balance.
func (p *Phone) TransitTopUp(ctx context.Context, o TransitTopUpOptions) (*TransitCard, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.agency(o.Agency)
	if err != nil {
		return nil, err
	}
	number, err := p.transitNumber(o.CardNumber)
	if err != nil {
		return nil, err
	}
	if err := p.resumeLoad(ctx, c, number); err != nil {
		return nil, fmt.Errorf("finishing the previous top-up first: %w", err)
	}
	pay, err := p.inAppPay(ctx, o.CardID, o.Finger, o.AmountMinor)
	if err != nil {
		return nil, err
	}
	reqID := make([]byte, 12)
	if _, err := rand.Read(reqID); err != nil {
		return nil, err
	}
	var l transitLoad
	if err := c.Do(ctx, "POST", "/v1/loads", map[string]any{"cardNumber": number, "amountMinor": o.AmountMinor,
		"requestId": hex.EncodeToString(reqID), "payment": pay}, &l); err != nil {
		return nil, err
	}
	if err := p.finishLoad(ctx, c, &l); err != nil {
		return nil, fmt.Errorf("the top-up is paid and will be finished the next time (run any transit command): %w", err)
	}
	return p.transitCard(number)
}

// TransitResume finishes the card's unfinished top-up, if any.
func (p *Phone) TransitResume(ctx context.Context, agencyURL, number string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.agency(agencyURL)
	if err != nil {
		return err
	}
	if number, err = p.transitNumber(number); err != nil {
		return err
	}
	return p.resumeLoad(ctx, c, number)
}

func (p *Phone) transitNumber(number string) (string, error) {
	cards := p.se.TransitCards()
	if number == "" {
		if len(cards) == 1 {
			return cards[0].CardNumber, nil
		}
		return "", mipay.Errorf(mipay.EINVALID, "this phone holds %d transit cards: name one with --card", len(cards))
	}
	for _, tc := range cards {
		if tc.CardNumber == number {
			return number, nil
		}
	}
	return "", mipay.Errorf(mipay.ENOTFOUND, "no transit card %s on this phone", number)
}

func (p *Phone) transitCard(number string) (*TransitCard, error) {
	for _, tc := range p.se.TransitCards() {
		if tc.CardNumber == number {
			return &TransitCard{City: tc.City, CardNumber: tc.CardNumber, Label: tc.Label, BalanceMinor: int64(tc.BalanceMinor), InSE: true, OfflineSerial: tc.OfflineSerial}, nil
		}
	}
	return nil, mipay.Errorf(mipay.ENOTFOUND, "no transit card %s on this phone", number)
}

func (p *Phone) resumeLoad(ctx context.Context, c httpx.Client, number string) error {
	var out struct {
		Load *transitLoad `json:"load"`
	}
	if err := c.Do(ctx, "GET", "/v1/cards/"+url.PathEscape(number)+"/pending-load", nil, &out); err != nil {
		return err
	}
	if out.Load == nil {
		return nil
	}
	return p.finishLoad(ctx, c, out.Load)
}

// seExchange sends one APDU to the SE (the phone is its own load terminal)
// and returns the data of a 9000 answer.
func (p *Phone) seExchange(apdu []byte) ([]byte, error) {
	r := p.se.Transmit(apdu)
	if len(r) < 2 {
		return nil, mipay.Errorf(mipay.EINTERNAL, "the secure element gave a short answer")
	}
	if w := binary.BigEndian.Uint16(r[len(r)-2:]); w != emv.SWSuccess {
		return nil, mipay.Errorf(mipay.ECONFLICT, "the transit card answered %04X (%s)", w, emv.SWText(w))
	}
	return r[:len(r)-2], nil
}

// finishLoad runs INITIALIZE FOR LOAD → the host's MAC2 → CREDIT FOR LOAD
// → the TAC to the host; when the card had already applied the load (a cut
// before the TAC got through), its GET TRANSACTION PROOF gives the TAC.
func (p *Phone) finishLoad(ctx context.Context, c httpx.Client, l *transitLoad) error {
	if l.State != "PAID" && l.State != "MAC2_SENT" {
		return nil
	}
	var aid []byte
	for _, tc := range p.se.TransitCards() {
		if tc.CardNumber == l.CardNumber {
			aid = tc.AID
		}
	}
	if aid == nil {
		return mipay.Errorf(mipay.ENOTFOUND, "transit card %s is not on this phone", l.CardNumber)
	}
	defer p.se.Reset()
	if _, err := p.seExchange(append(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(aid))}, aid...), 0)); err != nil {
		return err
	}
	term, err := hex.DecodeString(l.Terminal)
	if err != nil || len(term) != 6 {
		return mipay.Errorf(mipay.EUNAVAILABLE, "the agency sent a bad load terminal")
	}
	cmd := append([]byte{0x80, 0x50, 0x00, 0x02, 0x0B, 0x01}, binary.BigEndian.AppendUint32(nil, uint32(l.AmountMinor))...)
	init, err := p.seExchange(append(append(cmd, term...), 0x10))
	if err != nil {
		return err
	}
	var auth struct {
		Applied bool   `json:"applied"`
		MAC2    string `json:"mac2"`
		Date    string `json:"date"`
		Time    string `json:"time"`
	}
	if err := c.Do(ctx, "POST", "/v1/loads/"+url.PathEscape(l.ID)+"/authorize", map[string]string{"init": hex.EncodeToString(init)}, &auth); err != nil {
		return err
	}
	var tac []byte
	if auth.Applied {
		prev := binary.BigEndian.Uint16(init[4:6]) - 1
		proof, err := p.seExchange([]byte{0x80, 0x5A, 0x00, emv.EPurseTypeLoad, 0x02, byte(prev >> 8), byte(prev), 0x08})
		if err != nil {
			return err
		}
		tac = proof[4:8]
	} else {
		d, err1 := hex.DecodeString(auth.Date)
		t, err2 := hex.DecodeString(auth.Time)
		m, err3 := hex.DecodeString(auth.MAC2)
		if err1 != nil || err2 != nil || err3 != nil || len(d) != 4 || len(t) != 3 || len(m) != 4 {
			return mipay.Errorf(mipay.EUNAVAILABLE, "the agency sent a malformed MAC2")
		}
		credit := append(append(append([]byte{0x80, 0x52, 0x00, 0x00, 0x0B}, d...), t...), m...)
		if tac, err = p.seExchange(append(credit, 0x04)); err != nil {
			return err
		}
	}
	return c.Do(ctx, "POST", "/v1/loads/"+url.PathEscape(l.ID)+"/confirm", map[string]string{"tac": hex.EncodeToString(tac)}, nil)
}

// TransitCards lists the transit cards: those in the SE, with the agency's
// status and shadow balance, and the account's cards on other devices.
func (p *Phone) TransitCards(ctx context.Context, agencyURL string) ([]TransitCard, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.agency(agencyURL)
	if err != nil {
		return nil, err
	}
	var list struct {
		Cards []agencyCard `json:"cards"`
	}
	if err := c.Do(ctx, "GET", "/v1/cards", nil, &list); err != nil {
		return nil, err
	}
	byNum := map[string]agencyCard{}
	for _, ac := range list.Cards {
		byNum[ac.CardNumber] = ac
	}
	var out []TransitCard
	for _, tc := range p.se.TransitCards() {
		v := TransitCard{City: tc.City, CardNumber: tc.CardNumber, Label: tc.Label, BalanceMinor: int64(tc.BalanceMinor), InSE: true, OfflineSerial: tc.OfflineSerial}
		if ac, ok := byNum[tc.CardNumber]; ok {
			v.Status, v.ShadowBalance = ac.Status, ac.ShadowBalance
			delete(byNum, tc.CardNumber)
		}
		var pend struct {
			Load *transitLoad `json:"load"`
		}
		if err := c.Do(ctx, "GET", "/v1/cards/"+url.PathEscape(tc.CardNumber)+"/pending-load", nil, &pend); err == nil && pend.Load != nil {
			v.PendingLoad = pend.Load.ID
		}
		out = append(out, v)
	}
	for _, ac := range list.Cards {
		if _, ok := byNum[ac.CardNumber]; ok {
			out = append(out, TransitCard{City: ac.City, CardNumber: ac.CardNumber, Status: ac.Status, ShadowBalance: ac.ShadowBalance})
		}
	}
	// Best effort, again at every listing: the card's purchase proofs let
	// the agency clear taps a gate holds in doubt (it never got the answer).
	for _, tc := range p.se.TransitCards() {
		_, _ = p.reportProofs(ctx, c, tc.CardNumber)
	}
	return out, nil
}

// reportProofs sends a card's purchase proofs (GET TRANSACTION PROOF of
// each purchase in its log) to the agency; it answers how many in-doubt
// taps they cleared.
func (p *Phone) reportProofs(ctx context.Context, c httpx.Client, number string) (int, error) {
	proofs, err := p.se.PurchaseProofs(number)
	if err != nil || len(proofs) == 0 {
		return 0, err
	}
	type proof struct {
		OfflineSerial int64  `json:"offlineSerial"`
		TAC           string `json:"tac"`
	}
	in := struct {
		Proofs []proof `json:"proofs"`
	}{}
	for _, pr := range proofs {
		in.Proofs = append(in.Proofs, proof{OfflineSerial: int64(pr.OfflineSerial), TAC: hex.EncodeToString(pr.TAC[:])})
	}
	var out struct {
		Cleared int `json:"cleared"`
	}
	err = c.Do(ctx, "POST", "/v1/cards/"+url.PathEscape(number)+"/proofs", in, &out)
	return out.Cleared, err
}

// TransitHistoryEntry is one line of a card's history.
type TransitHistoryEntry struct {
	Kind        string `json:"kind"` // load, purchase, metro
	AmountMinor int64  `json:"amountMinor"`
	Serial      uint16 `json:"serial"`
	Terminal    string `json:"terminal"`
	Time        string `json:"time"` // YYYY-MM-DD hh:mm:ss
}

// TransitHistory is the card's log as the SE keeps it (newest first; the
// last ten transactions, offline taps included).
func (p *Phone) TransitHistory(number string) ([]TransitHistoryEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	number, err := p.transitNumber(number)
	if err != nil {
		return nil, err
	}
	log, err := p.se.TransitLog(number)
	if err != nil {
		return nil, err
	}
	out := make([]TransitHistoryEntry, 0, len(log))
	for _, r := range log {
		e := TransitHistoryEntry{AmountMinor: int64(r.AmountMinor), Serial: r.Serial, Terminal: fmt.Sprintf("%X", r.Terminal)}
		switch r.Type {
		case emv.EPurseTypeLoad:
			e.Kind = "load"
		case emv.EPurseTypeCompositePurchase:
			e.Kind = "metro"
		default:
			e.Kind = "purchase"
		}
		d, t := hex.EncodeToString(r.Date[:]), hex.EncodeToString(r.Time[:])
		if ts, err := time.Parse("20060102150405", d+t); err == nil {
			e.Time = ts.Format("2006-01-02 15:04:05")
		}
		out = append(out, e)
	}
	return out, nil
}

// TransitMove moves a card of this phone to another phone of the same
// account: the agency hotlists it here and issues a card there, whose
// balance (as of the last cleared tap) is loaded on the other phone. This
// phone's applet is removed.
func (p *Phone) TransitMove(ctx context.Context, agencyURL, number string, to *Phone) (*TransitCard, error) {
	if to == p {
		return nil, mipay.Errorf(mipay.EINVALID, "the card is already on this phone")
	}
	p.mu.Lock()
	c, err := p.agency(agencyURL)
	if err == nil {
		number, err = p.transitNumber(number)
	}
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	to.mu.Lock()
	toDev, toSE, toPub := to.app.DeviceID, to.se.ID(), to.se.PublicKey()
	to.mu.Unlock()
	if toDev == "" {
		p.mu.Unlock()
		return nil, mipay.Errorf(mipay.ECONFLICT, "phone %s is not signed in to the account", to.Name())
	}
	var res struct {
		Card    agencyCard      `json:"card"`
		Profile json.RawMessage `json:"profile"`
		Load    *transitLoad    `json:"load"`
	}
	err = c.Do(ctx, "POST", "/v1/cards/"+url.PathEscape(number)+"/move", map[string]any{"toDeviceId": toDev, "toSeId": toSE, "toSePublicKey": toPub}, &res)
	if err == nil {
		err = p.se.RemoveTransit(number)
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	to.mu.Lock()
	defer to.mu.Unlock()
	if _, err := to.se.InstallTransit(res.Profile); err != nil {
		return nil, err
	}
	tc, err := to.agency(agencyURL)
	if err != nil {
		return nil, err
	}
	if res.Load != nil {
		if err := to.finishLoad(ctx, tc, res.Load); err != nil {
			return nil, fmt.Errorf("the balance will be loaded the next time phone %s opens its transit cards: %w", to.Name(), err)
		}
	}
	return to.transitCard(res.Card.CardNumber)
}

// TransitTap holds the phone to a gate's reader: the e-purse answers in
// express mode, with no fingerprint and nothing armed.
func (p *Phone) TransitTap(ctx context.Context, reader string) error {
	if len(p.se.TransitCards()) == 0 {
		return mipay.Errorf(mipay.ENOTFOUND, "no transit card on this phone: run `mipay phone transit-issue`")
	}
	return nfc.Tap(ctx, reader, p.se)
}

// Sibling opens another handset of the same data directory and servers
// (the target of a move).
func (p *Phone) Sibling(ctx context.Context, name string) (*Phone, error) {
	cfg := p.cfg
	cfg.Name = name
	return Open(ctx, cfg)
}
