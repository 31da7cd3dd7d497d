package sim

import (
	"fmt"
	"os"
	"sync"
)

// failer is the test.Failer that Istio's fake control plane reports through, for use
// outside `go test`: a failure becomes a panic that the backend recovers into an error,
// and cleanups (stopping informers, removing temp dirs) run when the backend closes.
type failer struct {
	mu       sync.Mutex
	cleanups []func()
}

// failure is what Fatal and FailNow panic with; build and Call recover it.
type failure struct{ msg string }

func (f *failer) Fail()                             { panic(failure{"Istio's simulator reported a failure"}) }
func (f *failer) FailNow()                          { f.Fail() }
func (f *failer) Fatal(args ...any)                 { panic(failure{fmt.Sprint(args...)}) }
func (f *failer) Fatalf(format string, args ...any) { panic(failure{fmt.Sprintf(format, args...)}) }
func (f *failer) Skip(args ...any)                  { panic(failure{"skipped: " + fmt.Sprint(args...)}) }
func (f *failer) Log(...any)                        {}
func (f *failer) Logf(string, ...any)               {}
func (f *failer) Helper()                           {}

func (f *failer) TempDir() string {
	dir, err := os.MkdirTemp("", "egresslab-sim-")
	if err != nil {
		f.Fatalf("make temp dir: %v", err)
	}
	f.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (f *failer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// close runs the cleanups, last registered first, as testing.T does.
func (f *failer) close() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// recoverFailure turns a failure panic into *err; other panics go on.
func recoverFailure(what string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(failure)
	if !ok {
		panic(r)
	}
	*err = fmt.Errorf("%s: %s", what, f.msg)
}
