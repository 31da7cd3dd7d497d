package suggest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteFileReplacesTheFileWholeAndLeavesNothingBeside(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "entries.yaml")
	require.NoError(t, os.WriteFile(out, []byte("old\n"), 0o600))
	require.NoError(t, WriteFile(out, []byte("new\n")))
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "new\n", string(got))
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "readable by a CI job's other user")
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, left, 1, "no temporary file left")

	// Where it cannot write, it says so and leaves what is there.
	err = WriteFile(dir, []byte("x"))
	assert.ErrorContains(t, err, "-o "+dir+": it is a folder: name a file")
	err = WriteFile(filepath.Join(dir, "no", "such", "out.yaml"), []byte("x"))
	assert.ErrorContains(t, err, "the folder "+filepath.Join(dir, "no", "such")+" does not exist")
	left, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, left, 1)
}
