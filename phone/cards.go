package phone

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/mipay-oss/mipay"
)

// CardDetails is what the user types to add a card. It is sealed to the TSP
// on the phone; nothing of it is stored.
type CardDetails struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"` // YYMM
	CVN2   string `json:"cvn2,omitempty"`
	Name   string `json:"name,omitempty"`
	Phone  string `json:"phone,omitempty"` // the number registered at the bank
}

// Card is a wallet card as the app shows it.
type Card struct {
	ID          string `json:"id"`
	Bank        string `json:"bank"`
	Product     string `json:"product"`
	Art         string `json:"art"`
	CardType    string `json:"cardType"`
	PANLast4    string `json:"panLast4"`
	TokenLast4  string `json:"tokenLast4"`
	State       string `json:"state"`
	Default     bool   `json:"default"`
	Provisioned bool   `json:"provisioned"`
	InSE        bool   `json:"inSecureElement"` // the applet is installed on this handset
}

// AuthMethod is a way to confirm a yellow-path binding.
type AuthMethod struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Value string `json:"value"` // masked destination
}

// BindResult is the outcome of adding a card.
type BindResult struct {
	Decision    string       `json:"decision"`
	CardID      string       `json:"cardId,omitempty"`
	Card        *Card        `json:"card,omitempty"`
	Methods     []AuthMethod `json:"methods,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	Message     string       `json:"message,omitempty"`
	OTPSentTo   string       `json:"otpSentTo,omitempty"` // yellow path: where the code went
	Installed   bool         `json:"installed"`           // the card is in the SE, ready to pay
	ResendsLeft *int         `json:"resendsLeft,omitempty"`
}

// Decisions.
const (
	DecisionApproved = "APPROVED"
	DecisionOTP      = "REQUIRE_ADDITIONAL_AUTHENTICATION"
	DecisionDeclined = "DECLINED"
)

// AddCard binds a card: seals the details to the TSP, asks the wallet to
// bind it, and then either installs the card in the SE (green), sends the
// SMS code (yellow) or reports why not (red).
func (p *Phone) AddCard(ctx context.Context, c CardDetails) (*BindResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return nil, err
	}
	blob, err := p.sealCardData(ctx, c)
	if err != nil {
		return nil, err
	}
	var res BindResult
	path := "/v1/devices/" + url.PathEscape(p.app.DeviceID) + "/cards"
	if err := p.wallet.Do(ctx, "POST", path, map[string]string{"encryptedCardData": blob}, &res); err != nil {
		return nil, err
	}
	switch res.Decision {
	case DecisionApproved:
		if err := p.install(ctx, res.CardID); err != nil {
			return &res, err
		}
		res.Installed = true
	case DecisionOTP:
		if len(res.Methods) == 0 {
			return &res, mipay.Errorf(mipay.EUNAVAILABLE, "the bank asked for a code but offered no way to send it")
		}
		if err := p.requestOTP(ctx, &res, res.Methods[0].ID); err != nil {
			return &res, err
		}
	}
	return &res, nil
}

func (p *Phone) requestOTP(ctx context.Context, res *BindResult, methodID string) error {
	var out struct {
		Destination string `json:"destination"`
		ResendsLeft *int   `json:"resendsLeft"`
	}
	if err := p.wallet.Do(ctx, "POST", "/v1/cards/"+url.PathEscape(res.CardID)+"/otp", map[string]string{"methodId": methodID}, &out); err != nil {
		return err
	}
	res.OTPSentTo, res.ResendsLeft = out.Destination, out.ResendsLeft
	return nil
}

// ResendOTP asks the bank to send the code again.
func (p *Phone) ResendOTP(ctx context.Context, cardID string) (*BindResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return nil, err
	}
	res := &BindResult{Decision: DecisionOTP, CardID: cardID}
	// The wallet keeps the binding's methods; SMS is the first and only one.
	var card struct {
		Methods []AuthMethod `json:"methods"`
	}
	_ = p.wallet.Do(ctx, "GET", "/v1/cards/"+url.PathEscape(cardID), nil, &card)
	method := "sms"
	if len(card.Methods) > 0 {
		method = card.Methods[0].ID
	}
	return res, p.requestOTP(ctx, res, method)
}

// VerifyOTP submits the SMS code; on success the card is installed in the SE.
func (p *Phone) VerifyOTP(ctx context.Context, cardID, code string) (*BindResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return nil, err
	}
	var out json.RawMessage
	if err := p.wallet.Do(ctx, "POST", "/v1/cards/"+url.PathEscape(cardID)+"/otp/verify", map[string]string{"code": code}, &out); err != nil {
		return nil, err
	}
	if err := p.install(ctx, cardID); err != nil {
		return nil, err
	}
	return &BindResult{Decision: DecisionApproved, CardID: cardID, Installed: true}, nil
}

// install fetches the card profile through the wallet, installs it in the SE
// and confirms. Callers hold mu.
func (p *Phone) install(ctx context.Context, cardID string) error {
	var profile json.RawMessage
	if err := p.wallet.Do(ctx, "GET", "/v1/cards/"+url.PathEscape(cardID)+"/provisioning", nil, &profile); err != nil {
		return err
	}
	var ref struct {
		TokenRef string `json:"tokenUniqueReference"`
	}
	if err := json.Unmarshal(profile, &ref); err != nil || ref.TokenRef == "" {
		return mipay.Errorf(mipay.EUNAVAILABLE, "the wallet relayed a card profile without a token reference")
	}
	if _, err := p.se.Install(profile); err != nil && mipay.ErrorCode(err) != mipay.ECONFLICT {
		return err
	}
	p.app.CardTokens[cardID] = ref.TokenRef
	if err := p.save(); err != nil {
		return err
	}
	return p.wallet.Do(ctx, "POST", "/v1/cards/"+url.PathEscape(cardID)+"/provisioned", struct{}{}, nil)
}

// Cards lists this handset's cards as the wallet knows them, and whether
// each is installed in the SE.
func (p *Phone) Cards(ctx context.Context) ([]Card, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cards(ctx)
}

func (p *Phone) cards(ctx context.Context) ([]Card, error) {
	if err := p.requireDevice(); err != nil {
		return nil, err
	}
	var list struct {
		Cards []Card `json:"cards"`
	}
	if err := p.wallet.Do(ctx, "GET", "/v1/devices/"+url.PathEscape(p.app.DeviceID)+"/cards", nil, &list); err != nil {
		return nil, err
	}
	inSE := map[string]bool{}
	for _, c := range p.se.Cards() {
		inSE[c.TokenRef] = true
	}
	for i := range list.Cards {
		list.Cards[i].InSE = inSE[p.app.CardTokens[list.Cards[i].ID]]
	}
	return list.Cards, nil
}

// SetDefault makes a card the default for paying.
func (p *Phone) SetDefault(ctx context.Context, cardID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return err
	}
	if err := p.wallet.Do(ctx, "PUT", "/v1/devices/"+url.PathEscape(p.app.DeviceID)+"/default-card", map[string]string{"cardId": cardID}, nil); err != nil {
		return err
	}
	if ref, ok := p.app.CardTokens[cardID]; ok {
		return p.se.Select(ref)
	}
	return nil
}

// RemoveCard removes a card from the wallet (its token is deleted) and its
// applet from the SE.
func (p *Phone) RemoveCard(ctx context.Context, cardID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.requireDevice(); err != nil {
		return err
	}
	if err := p.wallet.Do(ctx, "DELETE", "/v1/cards/"+url.PathEscape(cardID), nil, nil); err != nil {
		return err
	}
	if ref, ok := p.app.CardTokens[cardID]; ok {
		if err := p.se.Remove(ref); err != nil && mipay.ErrorCode(err) != mipay.ENOTFOUND {
			return err
		}
		delete(p.app.CardTokens, cardID)
	}
	return p.save()
}

// SMS is a text message the SIM received.
type SMS struct {
	ID     int64  `json:"id"`
	Sender string `json:"sender"`
	Text   string `json:"text"`
	Time   string `json:"createdAt"`
}

// Messages returns the SMS the phone's number received (the gateway's
// outbox stands in for the SIM).
func (p *Phone) Messages(ctx context.Context) ([]SMS, error) {
	p.mu.Lock()
	number := p.app.Number
	p.mu.Unlock()
	if number == "" {
		return nil, mipay.Errorf(mipay.ECONFLICT, "phone %s has no SIM number yet: register or sign in with a phone number", p.cfg.Name)
	}
	var out struct {
		Messages []SMS `json:"messages"`
	}
	if err := p.sms.Do(ctx, "GET", "/v1/outbox/"+url.PathEscape(number)+"?after="+strconv.Itoa(0), nil, &out); err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// LastCode returns the latest 6-digit code in the SIM's messages.
func (p *Phone) LastCode(ctx context.Context) (string, error) {
	msgs, err := p.Messages(ctx)
	if err != nil {
		return "", err
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if c := findCode(msgs[i].Text); c != "" {
			return c, nil
		}
	}
	return "", mipay.Errorf(mipay.ENOTFOUND, "no verification code has arrived")
}

// findCode finds the first run of 4-8 digits standing alone in an SMS text.
func findCode(s string) string {
	run := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			run++
			continue
		}
		if run >= 4 && run <= 8 {
			return s[i-run : i]
		}
		run = 0
	}
	return ""
}

func (c Card) String() string {
	return fmt.Sprintf("%s %s •••• %s (token •••• %s) %s", c.Bank, c.Product, c.PANLast4, c.TokenLast4, c.State)
}
