package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mipay-oss/mipay/atomicfile"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	t.Run("creates with the mode", func(t *testing.T) {
		if err := atomicfile.Write(path, []byte("one"), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		fi, serr := os.Stat(path)
		if err != nil || serr != nil || string(b) != "one" || fi.Mode().Perm() != 0o600 {
			t.Fatalf("file %q mode %v (%v, %v)", b, fi.Mode(), err, serr)
		}
	})
	t.Run("replaces and leaves no temporary file", func(t *testing.T) {
		if err := atomicfile.Write(path, []byte("two"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != "two" {
			t.Fatalf("file %q after the replacement", b)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("directory holds %d entries, want only the file", len(entries))
		}
	})
	t.Run("a missing directory fails and writes nothing", func(t *testing.T) {
		if err := atomicfile.Write(filepath.Join(dir, "missing", "key"), []byte("x"), 0o600); err == nil {
			t.Fatal("wrote into a missing directory")
		}
	})
	t.Run("a failed rename leaves the old file and no temporary", func(t *testing.T) {
		target := filepath.Join(dir, "adir")
		if err := os.Mkdir(target, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(target, "inside"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.Write(target, []byte("x"), 0o600); err == nil {
			t.Fatal("renamed a file over a non-empty directory")
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Fatalf("directory holds %d entries after a failed write, want 2", len(entries))
		}
	})
}
