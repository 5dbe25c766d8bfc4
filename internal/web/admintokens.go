package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The admin API's tokens file (admin.tokens_file): named bearer tokens,
// stored only as their SHA-256, written by `billingd admin-tokens` and read
// by the daemon, which re-reads it whenever it changes.

// TokenPrefix starts every admin API token, so a leaked one is recognisable
// (secret scanners, logs) for what it is.
const TokenPrefix = "bd_"

// AdminToken is one named token: its hash, never the token.
type AdminToken struct {
	Name      string     `json:"name"`
	SHA256    string     `json:"sha256"` // hex of SHA-256(token)
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// TokensFile is the whole file.
type TokensFile struct {
	Tokens []AdminToken `json:"tokens"`
}

// tokenName is what a token's name may be: it becomes the audit log's actor.
var adminTokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckTokenName refuses a name the audit log could not show plainly.
func CheckTokenName(name string) error {
	if !adminTokenName.MatchString(name) {
		return fmt.Errorf("token name %q: must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// MintToken returns a fresh token: TokenPrefix and 160 random bits in
// lower-case base32.
func MintToken() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return TokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

// HashToken is the stored form of a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ReadTokensFile reads path; a file that does not exist is an empty one
// (exists false).
func ReadTokensFile(path string) (tf TokensFile, exists bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return TokensFile{}, false, nil
	}
	if err != nil {
		return TokensFile{}, false, err
	}
	if strings.TrimSpace(string(data)) == "" {
		return TokensFile{}, true, nil
	}
	if err := json.Unmarshal(data, &tf); err != nil {
		return TokensFile{}, true, fmt.Errorf("%s: not a billingd tokens file: %v", path, err)
	}
	for _, t := range tf.Tokens {
		if len(t.SHA256) != 64 {
			return TokensFile{}, true, fmt.Errorf("%s: token %q has no valid sha256", path, t.Name)
		}
	}
	return tf, true, nil
}

// WriteTokensFile replaces path atomically (a temporary file in the same
// directory, synced, renamed over it) with mode 0600: a reader never sees
// half a file, and only the service user can read the hashes.
func WriteTokensFile(path string, tf TokensFile) error {
	data, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// tokenSet is the daemon's view of the tokens file, re-read when the file's
// size or modification time changes (a stat per request is cheap next to the
// request), so a revoke applies to the next request without a restart.
type adminTokenSet struct {
	mu      sync.Mutex
	path    string
	mod     time.Time
	size    int64
	info    os.FileInfo
	loaded  bool
	byHash  map[string]AdminToken
	lastErr error
}

// lookup returns the live token whose hash is the presented token's.
func (s *adminTokenSet) lookup(path, presented string) (AdminToken, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refresh(path); err != nil {
		return AdminToken{}, false, err
	}
	want := HashToken(presented)
	t, ok := s.byHash[want]
	// The map lookup is by hash already; the constant-time compare keeps a
	// timing side channel out even if the map were replaced by a scan.
	if !ok || subtle.ConstantTimeCompare([]byte(t.SHA256), []byte(want)) != 1 || t.RevokedAt != nil {
		return AdminToken{}, false, nil
	}
	return t, true, nil
}

func (s *adminTokenSet) refresh(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		s.loaded, s.byHash = false, nil
		return fmt.Errorf("admin.tokens_file %s: %w", path, err)
	}
	if s.loaded && s.path == path && fi.ModTime().Equal(s.mod) && fi.Size() == s.size && os.SameFile(fi, s.info) {
		return s.lastErr
	}
	tf, _, err := ReadTokensFile(path)
	s.path, s.mod, s.size, s.info, s.loaded, s.lastErr = path, fi.ModTime(), fi.Size(), fi, true, err
	if err != nil {
		s.byHash = nil
		return err
	}
	s.byHash = make(map[string]AdminToken, len(tf.Tokens))
	for _, t := range tf.Tokens {
		s.byHash[strings.ToLower(t.SHA256)] = t
	}
	return nil
}
