package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// FileMode is the mode of every file of a SQLite database billingd opens: the
// database, its -wal and -shm files and the instance lock are readable and
// writable by the service user only (they hold customers' emails, gateway ids
// and the books).
const FileMode fs.FileMode = 0o600

// sqliteFiles are the files of the database at path that billingd or SQLite
// create: SQLite gives -wal and -shm (and a -journal, should one ever be used)
// the mode of the database file itself, so creating that one 0600 is what
// makes them 0600 too, whatever the umask.
func sqliteFiles(path string) []string {
	return []string{path, path + "-wal", path + "-shm", path + "-journal", path + ".lock"}
}

// prepareSQLiteFiles creates the database file 0600 when it does not exist yet
// (unless the DSN opens it read-only, when SQLite refuses a missing file
// itself), and tightens every existing file of the database whose mode lets
// anyone but its owner in. It returns one notice per file it tightened, for the
// caller to log. A file it may not chmod (a read-only tool run by another user,
// a read-only file system) is reported, not fatal: the open goes on.
func prepareSQLiteFiles(path string, readOnly bool) ([]string, error) {
	var notices []string
	if !readOnly {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
		switch {
		case err == nil:
			// The umask can only take bits away from 0600; Chmod makes it
			// exactly 0600 even under a umask that removed the owner's.
			cerr := f.Chmod(FileMode)
			if err := errors.Join(cerr, f.Close()); err != nil {
				return nil, fmt.Errorf("store: create %s: %w", path, err)
			}
		case errors.Is(err, fs.ErrExist):
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
			// No directory, or none we may write: SQLite's own open says so.
		default:
			return nil, fmt.Errorf("store: create %s: %w", path, err)
		}
	}
	for _, p := range sqliteFiles(path) {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		mode := fi.Mode().Perm()
		if mode&^FileMode == 0 {
			continue
		}
		if err := os.Chmod(p, FileMode); err != nil {
			notices = append(notices, fmt.Sprintf("%s has mode %04o (readable by others) and could not be tightened to %04o: %v", p, mode, FileMode, err))
			continue
		}
		notices = append(notices, fmt.Sprintf("tightened the mode of %s from %04o to %04o: database files are readable by the service user only", p, mode, FileMode))
	}
	return notices, nil
}

// FileNotices says what opening the database did to its files' modes (or could
// not do), one line per file; empty when every file was already private. The
// commands log them.
func (s *Store) FileNotices() []string { return s.fileNotices }
