package localcp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one program of the control plane, in a process group of its own so that
// stopping it stops whatever it started too.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited and been reaped
	err     error         // what Wait returned; read after done
}

// startProcess starts path with args in dir, its output in dir/<name>.log.
//
// Setpgid puts it in a new process group: a Ctrl-C in the terminal reaches only the
// test binary, which stops the group itself. Pdeathsig kills it when the test binary
// dies without getting the chance (killed, or a `go test -timeout` panic).
func startProcess(dir, name, path string, args, env []string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(baseEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// baseEnv is the little of this process's environment the control plane needs; the
// rest (a KUBECONFIG, proxies, Istio variables) must not leak into it.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop asks the process group to terminate, waits up to grace, then kills it.
func (p *process) stop(grace time.Duration) {
	pgid := p.pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Anything the process started and left behind in its group goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// died is the error for a process that exited while it should be serving.
func (p *process) died() error {
	_, err := p.exited()
	return fmt.Errorf("%s exited (%v); last lines of its log:\n%s", p.name, err, p.logTail(25))
}

// logTail is the last n lines of the process's output.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b bytes.Buffer
	for _, l := range lines {
		if len(l) > 400 {
			l = l[:400] + "…"
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// freePorts returns n distinct ports that are free on 127.0.0.1 right now.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Every control plane's folder is named with this prefix and holds ownerFile, the PID
// of the process that started it, so that a later start can remove the folders of
// runs that died without cleaning up.
const (
	dirPrefix = "egresslab-localcp-"
	ownerFile = "owner.pid"
)

// sweepStale removes the folders of control planes whose owner is gone. Their
// processes died with the owner (Pdeathsig); only the folder can be left.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // being created right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

// alive reports whether a process with this PID exists (signal 0).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// running is every control plane of this process that has not stopped, for the
// signal handler.
var running = struct {
	sync.Mutex
	set map[*ControlPlane]struct{}
}{set: map[*ControlPlane]struct{}{}}
