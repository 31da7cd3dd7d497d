// Command coredns is CoreDNS with the plugins of kubeadm's default Corefile (errors,
// health, ready, kubernetes, prometheus, forward, cache, loop, reload, loadbalance),
// log, for reading a query's path while debugging, and hosts, with which offline runs
// name the stand-in internet instead of forwarding anything off the machine. CoreDNS's
// own main imports every plugin; this is the way its docs give for a smaller build.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }
