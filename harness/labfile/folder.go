package labfile

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Folder opens a user's lab folder dir (a path on disk) for a Source: fsys is rooted
// at the folder that holds dir (its real one, symbolic links resolved) and in is dir's
// name there, so that the lab may name a file of its folder and of a sibling folder
// ("../serviceentry/x.yaml"), as the labs of labs/ do; fsys is an os.Root's, so that a
// symbolic link is followed only while it stays inside that parent. The lab file,
// file in dir, is named by the user and read wherever it leads. When dir has no parent
// (it is /) or the parent cannot be opened, fsys is rooted at dir itself and in is ".";
// when dir cannot be opened either, fsys is os.DirFS(dir) and Load says why it cannot
// read the file. done closes the root: call it after Load, which reads every file the
// lab names before it returns.
func Folder(dir, file string) (fsys fs.FS, in string, done func()) {
	real, err := filepath.EvalSymlinks(dir)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return os.DirFS(dir), ".", func() {}
	}
	in = "."
	var root *os.Root
	if parent := filepath.Dir(real); parent != real {
		if r, err := os.OpenRoot(parent); err == nil {
			root, in = r, filepath.Base(real)
		}
	}
	if root == nil {
		if root, err = os.OpenRoot(real); err != nil {
			return os.DirFS(dir), ".", func() {}
		}
	}
	return labFileFS{FS: root.FS(), file: path.Join(in, file), disk: filepath.Join(real, file)}, in, func() { root.Close() }
}

// labFileFS is a root's FS, but for the lab file itself, read from disk.
type labFileFS struct {
	fs.FS
	file, disk string // the lab file in FS, and on disk
}

func (l labFileFS) Open(name string) (fs.File, error) {
	if name == l.file {
		return os.Open(l.disk)
	}
	return l.FS.Open(name)
}

func (l labFileFS) Stat(name string) (fs.FileInfo, error) {
	if name == l.file {
		return os.Stat(l.disk)
	}
	return fs.Stat(l.FS, name)
}

func (l labFileFS) ReadLink(name string) (string, error) { return fs.ReadLink(l.FS, name) }

func (l labFileFS) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(l.FS, name) }

func (l labFileFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(l.FS, name) }
