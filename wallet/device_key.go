package wallet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// MarshalJSON adds seKeySha256, the SHA-256 (hex) of the SE public key this
// wallet verified against the SE vendor's chain at registration. Relying
// parties that seal keys to the SE (the transit agencies personalizing an
// e-purse) check the key a phone presents against it; the key itself stays
// out of the answer.
func (d Device) MarshalJSON() ([]byte, error) {
	type plain Device
	out := struct {
		plain
		SEKeySHA256 string `json:"seKeySha256,omitempty"`
	}{plain: plain(d)}
	if len(d.SEPublicKey) > 0 {
		sum := sha256.Sum256(d.SEPublicKey)
		out.SEKeySHA256 = hex.EncodeToString(sum[:])
	}
	return json.Marshal(out)
}
