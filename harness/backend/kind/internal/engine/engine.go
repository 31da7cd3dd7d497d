// Package engine gives the kind backend a Docker engine of its own where none answers:
// it runs hack/docker-engine.sh, which installs Debian's docker.io when needed, starts
// dockerd on a socket of the project's own (never a user's Docker), and stops it by PID.
// The offline kind run uses it; a laptop with Docker does not.
package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// Script is the script, relative to the root of the egresslab checkout.
const Script = "hack/docker-engine.sh"

// Engine is the project's Docker engine, started by Start.
type Engine struct {
	script string
	// Host is its DOCKER_HOST (unix:///run/egresslab-docker/docker.sock).
	Host string
}

// Start starts the engine (or finds it running) with the script under root, the
// egresslab checkout; the script's progress lines go to progress.
func Start(ctx context.Context, root string, progress io.Writer) (*Engine, error) {
	script := filepath.Join(root, Script)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, script, "start")
	cmd.Stdout = &out
	if progress != nil {
		cmd.Stderr = progress
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("start the project's Docker engine (%s start): %w", Script, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if host, ok := strings.CutPrefix(strings.TrimSpace(line), "DOCKER_HOST="); ok {
			return &Engine{script: script, Host: host}, nil
		}
	}
	return nil, fmt.Errorf("start the project's Docker engine: %s printed no DOCKER_HOST line: %q", Script, out.String())
}

// Stop stops the engine: dockerd, its containerd and shims, its firewall rule, its
// bridges and mounts. Its images stay for the next run.
func (e *Engine) Stop(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, e.script, "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("stop the project's Docker engine (%s stop): %w: %s", Script, err, strings.TrimSpace(string(out)))
	}
	return nil
}
