package portal

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// What the portal reads from the wallet's and transit's JSON APIs (only the
// fields it shows).

type challenge struct {
	ID        string    `json:"challengeId"`
	Email     string    `json:"email"`
	ExpiresAt time.Time `json:"expiresAt"`
}

type walletSession struct {
	Token     string `json:"token"`
	AccountID string `json:"accountId"`
}

type device struct {
	ID       string    `json:"id"`
	Model    string    `json:"model"`
	LastSeen time.Time `json:"lastSeenAt"`
}

type card struct {
	ID         string `json:"id"`
	Bank       string `json:"bank"`
	Product    string `json:"product"`
	PANLast4   string `json:"panLast4"`
	TokenLast4 string `json:"tokenLast4"`
	State      string `json:"state"`
}

type location struct {
	Latitude       float64   `json:"latitude"`
	Longitude      float64   `json:"longitude"`
	AccuracyMeters float64   `json:"accuracyMeters"`
	Time           time.Time `json:"time"`
}

type command struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	State   string    `json:"state"`
	Result  string    `json:"result"`
	Created time.Time `json:"createdAt"`
}

type cardChange struct {
	CardID  string `json:"cardId"`
	State   string `json:"state"`
	Changed bool   `json:"changed"`
	Error   string `json:"error"`
}

type deviceChange struct {
	Cards            []cardChange `json:"cards"`
	Command          *command     `json:"command"`
	TransitHotlisted []string     `json:"transitHotlisted"`
	TransitError     string       `json:"transitError"`
}

type transitCard struct {
	CardNumber    string `json:"cardNumber"`
	City          string `json:"city"`
	DeviceID      string `json:"deviceId"`
	Status        string `json:"status"`
	ShadowBalance int64  `json:"shadowBalanceMinor"`
}

// wallet calls the wallet's API, as the user when token is set.
type wallet struct {
	cfg *Config
}

func (w wallet) client(token string) httpx.Client {
	return httpx.Client{Base: w.cfg.WalletURL(), Token: token, HTTP: &http.Client{Timeout: w.cfg.CallTimeout}}
}

func (w wallet) do(ctx context.Context, token, method, path string, in, out any) error {
	c := w.client(token)
	if c.Base == "" {
		return mipay.Errorf(mipay.EUNAVAILABLE, "the wallet is not reachable, try again later")
	}
	return c.Do(ctx, method, path, in, out)
}

func devPath(id, rest string) string { return "/v1/devices/" + url.PathEscape(id) + rest }

func (w wallet) startChallenge(ctx context.Context, login, password string) (*challenge, error) {
	var out challenge
	err := w.do(ctx, "", "POST", "/v1/portal/challenges", map[string]string{"login": login, "password": password}, &out)
	return &out, err
}

func (w wallet) verify(ctx context.Context, challengeID, emailCode, recoveryCode string) (*walletSession, error) {
	in := map[string]string{}
	if emailCode != "" {
		in["emailCode"] = emailCode
	}
	if recoveryCode != "" {
		in["recoveryCode"] = recoveryCode
	}
	var out walletSession
	err := w.do(ctx, "", "POST", "/v1/portal/challenges/"+url.PathEscape(challengeID)+"/verify", in, &out)
	return &out, err
}

func (w wallet) signOut(ctx context.Context, token string) error {
	return w.do(ctx, token, "DELETE", "/v1/sessions/current", nil, nil)
}

func (w wallet) devices(ctx context.Context, token string) ([]device, error) {
	var out struct {
		Devices []device `json:"devices"`
	}
	err := w.do(ctx, token, "GET", "/v1/devices", nil, &out)
	return out.Devices, err
}

func (w wallet) device(ctx context.Context, token, id string) (*device, error) {
	var out device
	err := w.do(ctx, token, "GET", devPath(id, ""), nil, &out)
	return &out, err
}

func (w wallet) cards(ctx context.Context, token, id string) ([]card, error) {
	var out struct {
		Cards []card `json:"cards"`
	}
	err := w.do(ctx, token, "GET", devPath(id, "/cards"), nil, &out)
	return out.Cards, err
}

func (w wallet) locations(ctx context.Context, token, id string, limit int) ([]location, error) {
	var out struct {
		Locations []location `json:"locations"`
	}
	err := w.do(ctx, token, "GET", devPath(id, "/locations?limit="+strconv.Itoa(limit)), nil, &out)
	return out.Locations, err
}

func (w wallet) commands(ctx context.Context, token, id string) ([]command, error) {
	var out struct {
		Commands []command `json:"commands"`
	}
	err := w.do(ctx, token, "GET", devPath(id, "/commands"), nil, &out)
	return out.Commands, err
}

func (w wallet) queue(ctx context.Context, token, id, kind string) (*command, error) {
	var out command
	err := w.do(ctx, token, "POST", devPath(id, "/commands"), map[string]string{"kind": kind}, &out)
	return &out, err
}

// deviceAction runs switch-off, found or remove (DELETE …/cards).
func (w wallet) deviceAction(ctx context.Context, token, id, action string) (*deviceChange, error) {
	var out deviceChange
	var err error
	switch action {
	case actionRemove:
		err = w.do(ctx, token, "DELETE", devPath(id, "/cards"), nil, &out)
	default:
		err = w.do(ctx, token, "POST", devPath(id, "/"+action), struct{}{}, &out)
	}
	return &out, err
}

// transitCards lists the account's transit cards (nil, nil when no transit
// agency is configured).
func (w wallet) transitCards(ctx context.Context, token string) ([]transitCard, error) {
	base := w.cfg.TransitURL()
	if base == "" {
		return nil, nil
	}
	c := httpx.Client{Base: base, Token: token, HTTP: &http.Client{Timeout: w.cfg.CallTimeout}}
	var out struct {
		Cards []transitCard `json:"cards"`
	}
	err := c.Do(ctx, "GET", "/v1/cards", nil, &out)
	return out.Cards, err
}
