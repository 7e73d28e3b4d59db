package hsm

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"strings"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/cryptobox"
)

// PSAMExporter hands a transit agency's purchase master key to a gate's PSAM
// (purchase secure access module), sealed to the PSAM's own P-256 key. In
// the PBOC e-purse scheme the purchase master sits in every PSAM of its
// agency (the PSAM diversifies it per card to make MAC1 and check MAC2); the
// load and TAC masters never leave the agency's HSM. It is separate from HSM
// so that other implementations need not support it; *Soft does.
type PSAMExporter interface {
	// ExportPSAMKey returns the TDES2 key under h sealed with cryptobox to
	// recipient, with aad bound. Only handles ending in PSAMKeySuffix leave.
	ExportPSAMKey(ctx context.Context, h Handle, recipient *ecdh.PublicKey, aad []byte) ([]byte, error)
}

// PSAMKeySuffix ends the handles of purchase master keys (e.g.
// "transit/sz/epurse-dpk"): the only keys ExportPSAMKey lets out.
const PSAMKeySuffix = "/epurse-dpk"

var _ PSAMExporter = (*Soft)(nil)

// ExportPSAMKey implements PSAMExporter.
func (s *Soft) ExportPSAMKey(_ context.Context, h Handle, recipient *ecdh.PublicKey, aad []byte) ([]byte, error) {
	if err := checkRecipient(recipient, aad); err != nil {
		return nil, err
	}
	if !strings.HasSuffix(string(h), PSAMKeySuffix) {
		return nil, &mipay.Error{Code: mipay.EFORBIDDEN, Err: ErrNotExportable,
			Message: fmt.Sprintf("key %s may not leave the HSM (only …%s keys go to PSAMs)", h, PSAMKeySuffix)}
	}
	k, err := s.get(h, TDES2)
	if err != nil {
		return nil, err
	}
	blob, err := cryptobox.Seal(recipient, k.tdes[:], aad)
	if err != nil {
		return nil, mipay.WrapError(mipay.EINTERNAL, err, "sealing purchase key")
	}
	return blob, nil
}
