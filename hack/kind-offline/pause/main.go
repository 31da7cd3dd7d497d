// Command pause holds a pod's namespaces, as Kubernetes' pause container
// (build/pause/linux/pause.c) does, for the offline kind node: no registry can give
// registry.k8s.io/pause here, and that one is C. It sleeps until SIGINT or SIGTERM, and
// reaps the zombies a pod with a shared PID namespace leaves to its PID 1.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", s)
			os.Exit(0)
		}
		for {
			// A SIGCHLD can stand for several exits: reap until none is left.
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
