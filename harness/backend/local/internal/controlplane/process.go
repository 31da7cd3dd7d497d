package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
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

// freePorts returns n distinct ports that are free on 127.0.0.1 right now. They are
// drawn from below the kernel's ephemeral range: a port from there (what ":0" gives)
// can be taken by any outgoing connection on the machine before our program binds it.
func freePorts(n int) ([]int, error) {
	low, high := 20000, ephemeralLow()-1
	handedOut.Lock()
	defer handedOut.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("find %d free ports on 127.0.0.1 between %d and %d: none left", n, low, high)
		}
		port := low + rand.IntN(high-low+1)
		if handedOut.set[port] {
			continue
		}
		l, err := net.Listen("tcp", loopback(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		handedOut.set[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// handedOut remembers the ports given out in this process, so that two control planes
// started by one test binary never pick the same one.
var handedOut = struct {
	sync.Mutex
	set map[int]bool
}{set: map[int]bool{}}

// ephemeralLow is the first port of the kernel's range for outgoing connections.
func ephemeralLow() int {
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 21000 {
				return n
			}
		}
	}
	return 32768
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
