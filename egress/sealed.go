package egress

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
)

// Sealer keeps a request's credentials unreadable in the fleet's record of
// its egress, so that Redis never holds them in the clear: AES-256-GCM
// under a key derived from a secret every instance has and Redis does not
// (the LiveKit API secret), bound to the egress id.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives the sealing key from secret.
func NewSealer(secret string) (*Sealer, error) {
	if secret == "" {
		return nil, errors.New("egress: an empty secret seals nothing")
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "trackrec egress credentials v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// credentials are what a sealed blob holds.
type credentials struct {
	AccessKey    string `json:"a"`
	Secret       string `json:"s"`
	SessionToken string `json:"t,omitempty"`
}

// seal returns s's credentials sealed for egress id.
func (k *Sealer) seal(id string, s *S3) ([]byte, error) {
	plain, err := json.Marshal(credentials{s.AccessKey, s.Secret, s.SessionToken})
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, plain, []byte(id)), nil
}

// open fills s's credentials from blob, sealed for egress id.
func (k *Sealer) open(id string, blob []byte, s *S3) error {
	n := k.aead.NonceSize()
	if len(blob) < n {
		return errors.New("egress: sealed credentials too short")
	}
	plain, err := k.aead.Open(nil, blob[:n], blob[n:], []byte(id))
	if err != nil {
		return fmt.Errorf("egress: credentials sealed under another secret or for another egress: %w", err)
	}
	var c credentials
	if err := json.Unmarshal(plain, &c); err != nil {
		return err
	}
	s.AccessKey, s.Secret, s.SessionToken = c.AccessKey, c.Secret, c.SessionToken
	return nil
}
