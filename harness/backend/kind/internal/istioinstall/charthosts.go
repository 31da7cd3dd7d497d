package istioinstall

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// chartHosts says where Istio publishes its Helm charts, by the first minor release
// published there. From 1.31 nothing is published to the Google Cloud Storage bucket
// any more (Istio 1.31 upgrade notes, "Deprecation of GCP infrastructure"): Helm
// charts are at blob.istio.io and OCI charts at ghcr.io; the images stay on Docker Hub.
// The old bucket is removed in December 2026.
var chartHosts = []struct {
	fromMinor int
	helm      string // a Helm chart repository (index.yaml)
	oci       string // the OCI location of the same charts, "" where there is none
}{
	{fromMinor: 0, helm: "https://istio-release.storage.googleapis.com/charts"},
	{fromMinor: 31, helm: "https://blob.istio.io/istio-release/charts", oci: "oci://ghcr.io/istio/release/charts"},
}

// ChartRepoFor is Istio's own Helm chart repository for release version ("1.31.0").
func ChartRepoFor(version string) (string, error) {
	minor, err := istioMinor(version)
	if err != nil {
		return "", err
	}
	repo := ""
	for _, h := range chartHosts {
		if minor >= h.fromMinor {
			repo = h.helm
		}
	}
	return repo, nil
}

// istioMinor is the minor of an Istio 1.x release ("1.31.0" → 31).
func istioMinor(version string) (int, error) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("Istio version %q: want a release such as %s", version, Version)
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, fmt.Errorf("Istio version %q: want a release such as %s", version, Version)
	}
	return minor, nil
}

// Retired says why repoURL cannot hold Istio release version's charts: it is one of
// Istio's own hosts, and not the one that release is published to. "" for any other
// URL (a mirror the user named is theirs to know).
func Retired(repoURL, version string) string {
	want, err := ChartRepoFor(version)
	if err != nil || repoURL == want {
		return ""
	}
	u, err := url.Parse(repoURL)
	if err != nil {
		return ""
	}
	for _, h := range chartHosts {
		if hu, _ := url.Parse(h.helm); hu != nil && hu.Host == u.Host {
			return fmt.Sprintf("Istio %s's charts are not published to %s; its repository is %s", version, u.Host, want)
		}
	}
	return ""
}

// movedHint is what a failed download from repoURL adds when the URL is a host Istio
// no longer publishes Version's charts to.
func movedHint(repoURL string) string {
	if why := Retired(repoURL, Version); why != "" {
		return " (" + why + ")"
	}
	return ""
}
