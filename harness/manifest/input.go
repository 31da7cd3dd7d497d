package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxInputBytes bounds a lab or manifest file egresslab reads: far beyond any lab (the
// largest shipped is a few kilobytes), small enough that a wrong file is refused at
// once rather than read for minutes.
const MaxInputBytes = 4 << 20

// ErrNotInput is the cause of a refusal by ReadInput: the file is not one egresslab reads.
var ErrNotInput = errors.New("not a file egresslab reads")

// ReadInput reads a file a user named from fsys: only a regular file (a FIFO would
// block the program and a device never end; a directory is not a manifest), of at most
// MaxInputBytes. Its errors say which and wrap ErrNotInput.
func ReadInput(fsys fs.FS, name string) ([]byte, error) {
	return readInput(func() (fs.FileInfo, error) { return fs.Stat(fsys, name) }, func() (fs.File, error) { return fsys.Open(name) })
}

// ReadInputFile is ReadInput for a path on disk, relative to the working directory.
func ReadInputFile(path string) ([]byte, error) {
	return readInput(func() (fs.FileInfo, error) { return os.Stat(path) }, func() (fs.File, error) { return os.Open(path) })
}

// readInput looks at the file before it opens it: opening a FIFO for reading already
// waits for a writer.
func readInput(stat func() (fs.FileInfo, error), open func() (fs.File, error)) ([]byte, error) {
	info, err := stat()
	if err != nil {
		return nil, err
	}
	if err := regular(info); err != nil {
		return nil, err
	}
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f)
}

func regular(info fs.FileInfo) error {
	m := info.Mode()
	switch {
	case m.IsRegular():
		if info.Size() > MaxInputBytes {
			return fmt.Errorf("%w: it holds %d bytes, more than the %d a lab or manifest may", ErrNotInput, info.Size(), MaxInputBytes)
		}
		return nil
	case m.IsDir():
		return fmt.Errorf("%w: it is a directory", ErrNotInput)
	case m&fs.ModeNamedPipe != 0:
		return fmt.Errorf("%w: it is a named pipe (FIFO), which would wait for a writer", ErrNotInput)
	case m&fs.ModeDevice != 0 || m&fs.ModeCharDevice != 0:
		return fmt.Errorf("%w: it is a device", ErrNotInput)
	case m&fs.ModeSocket != 0:
		return fmt.Errorf("%w: it is a socket", ErrNotInput)
	}
	return fmt.Errorf("%w: it is not a regular file (mode %s)", ErrNotInput, m)
}

// readBounded reads at most MaxInputBytes, refusing a file that grew past it.
func readBounded(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxInputBytes {
		return nil, fmt.Errorf("%w: it holds more than the %d bytes a lab or manifest may", ErrNotInput, MaxInputBytes)
	}
	return data, nil
}
