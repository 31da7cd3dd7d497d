package kind

import (
	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
)

// Published is what a person following a handout on a cluster of their own installs and
// pulls, as Istio publishes it: the release the kind backend installs, the Helm chart
// repository Istio publishes it to, the releases' names, and the image of Istio's curl
// sample, which the handouts' client runs. ClientImage is egresslab's own client, the
// image a by-hand manifest replaces: egresslab builds it and loads it into its kind
// cluster, and publishes it nowhere.
type Published struct {
	IstioVersion, ChartRepo           string
	Namespace, BaseRelease, BaseChart string
	IstiodRelease, IstiodChart        string
	CurlImage, ClientImage            string
}

// PublishedRelease is the pinned Istio release as Istio publishes it.
func PublishedRelease() Published {
	repo, err := istioinstall.ChartRepoFor(istioinstall.Version)
	if err != nil {
		panic("the pinned Istio release has no chart repository: " + err.Error()) // a constant: a test catches it
	}
	return Published{
		IstioVersion: istioinstall.Version, ChartRepo: repo,
		Namespace: istioinstall.Namespace, BaseRelease: istioinstall.BaseRelease, BaseChart: istioinstall.BaseChart,
		IstiodRelease: istioinstall.IstiodRelease, IstiodChart: istioinstall.IstiodChart,
		CurlImage: istioinstall.CurlSampleImage, ClientImage: appimage.Client.Tag,
	}
}
