package dataplane

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	xdsmatcher "github.com/cncf/xds/go/xds/type/matcher/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egresslab/egresslab/harness/manifest"
)

const clientSPIFFE = "spiffe://cluster.local/ns/egresslab/sa/client"

// Istio's egress-gateway authz test (tests/integration/security/authz_test.go,
// TestAuthz_EgressGateway; testdata/authz/egress-gateway.yaml.tmpl) for the lab's
// gateway: only the client's identity may GET, and nobody may reach /admin/.
const egressPolicies = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: egress-client-get, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/egresslab/sa/client"]}}]
    to: [{operation: {methods: ["GET"], hosts: ["jsonplaceholder.typicode.com"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: egress-no-admin, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin/*"]}}]
`

// egressGatewayHCM is the HTTP connection manager Istio's own config generator gives the
// egress gateway (labs/apps/egress-gateway.yaml, a router) for port 80, where the
// egress-gateway lab's Gateway (labs/egress-gateway/mutual-tls.yaml) terminates the
// client sidecar's Istio mutual TLS, with policies (YAML) applied.
func egressGatewayHCM(t *testing.T, policies string) *hcm.HttpConnectionManager {
	lab, err := manifest.LoadFile("../../labs/egress-gateway/mutual-tls.yaml", "egresslab")
	require.NoError(t, err)
	sets := []*manifest.Set{lab}
	if policies != "" {
		set, err := manifest.Parse("policies", []byte(policies), "istio-system")
		require.NoError(t, err)
		sets = append(sets, set)
	}
	s, proxy := egressGateway(t, sets...)
	for _, l := range s.Listeners(proxy) {
		if l.GetName() != "0.0.0.0_80" {
			continue
		}
		require.Len(t, l.GetFilterChains(), 1)
		chain := l.GetFilterChains()[0]
		var tls tlsv3.DownstreamTlsContext
		require.NoError(t, chain.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tls))
		require.True(t, tls.GetRequireClientCertificate().GetValue(), "ISTIO_MUTUAL: the peer presents a certificate")
		var h hcm.HttpConnectionManager
		require.NoError(t, chain.GetFilters()[len(chain.GetFilters())-1].GetTypedConfig().UnmarshalTo(&h))
		return &h
	}
	t.Fatal("the gateway has no listener 0.0.0.0_80")
	return nil
}

func rbacFilterCount(h *hcm.HttpConnectionManager) int {
	n := 0
	for _, f := range h.GetHttpFilters() {
		if f.GetTypedConfig().MessageIs(&rbachttp.RBAC{}) {
			n++
		}
	}
	return n
}

func TestAuthorizeIstiosEgressGatewayPolicies(t *testing.T) {
	h := egressGatewayHCM(t, egressPolicies)
	require.Equal(t, 2, rbacFilterCount(h), "Istio's one filter per action: DENY, then ALLOW")
	call := func(method, path, principal string) AuthzRequest {
		return AuthzRequest{Method: method, Authority: "jsonplaceholder.typicode.com", Path: path, Principal: principal,
			Headers: http.Header{"User-Agent": {"curl"}}, DestinationPort: 80, DestinationIP: FirstPodIP, RemoteIP: "10.244.0.11"}
	}
	for _, tc := range []struct {
		name   string
		r      AuthzRequest
		policy string // "" allowed
	}{
		{"the client's GET", call("GET", "/todos/1?x=1", clientSPIFFE), ""},
		{"the client's POST", call("POST", "/todos", clientSPIFFE), "none"},
		{"team-b's GET", call("GET", "/todos/1", "spiffe://cluster.local/ns/team-b/sa/client"), "none"},
		{"a GET in plain text", call("GET", "/todos/1", ""), "none"},
		{"a GET for another host", func() AuthzRequest { r := call("GET", "/todos/1", clientSPIFFE); r.Authority = "example.com"; return r }(), "none"},
		{"the host in capitals (hosts ignore case)", func() AuthzRequest {
			r := call("GET", "/", clientSPIFFE)
			r.Authority = "JSONPlaceholder.typicode.com"
			return r
		}(), ""},
		{"the client's GET of /admin/", call("GET", "/admin/users", clientSPIFFE), "ns[istio-system]-policy[egress-no-admin]-rule[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Authorize(h, tc.r)
			require.NoError(t, err)
			assert.Equal(t, AuthzDecision{Denied: tc.policy != "", Policy: tc.policy}, d)
			if tc.policy != "" {
				assert.Equal(t, "rbac_access_denied_matched_policy["+tc.policy+"]", d.Details())
			} else {
				assert.Empty(t, d.Details())
			}
		})
	}
}

// Istio turns a request principal (JWT) into dynamic metadata matchers: not modelled.
func TestAuthorizeNamesWhatItDoesNotModelInIstiosConfig(t *testing.T) {
	h := egressGatewayHCM(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt-only, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  rules:
  - from: [{source: {requestPrincipals: ["test-issuer-1@istio.io/sub-1"]}}]
`)
	_, err := Authorize(h, AuthzRequest{Method: "GET", Authority: "jsonplaceholder.typicode.com", Path: "/", Principal: clientSPIFFE})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `rules.policies["ns[istio-system]-policy[jwt-only]-rule[0]"].principals[0].and_ids.ids[0]`)
	assert.Contains(t, err.Error(), "metadata: not modelled")
}

func TestAuthorizeAllowsWhereIstioAddsNoRBACFilter(t *testing.T) {
	h := egressGatewayHCM(t, "")
	require.Zero(t, rbacFilterCount(h))
	d, err := Authorize(h, AuthzRequest{Method: "DELETE", Authority: "jsonplaceholder.typicode.com", Path: "/"})
	require.NoError(t, err)
	assert.False(t, d.Denied)
}

// Hand-built configs, one matcher at a time, against one request.
var authzRequest = AuthzRequest{Method: "GET", Authority: "api.example.com", Path: "/v1/items?id=7",
	Headers:   http.Header{"X-Team": {"blue"}, "Accept": {"a", "b"}, "X-Count": {"42"}},
	Principal: clientSPIFFE, DestinationPort: 8080, DestinationIP: "10.0.0.5", RemoteIP: "10.1.2.3"}

func filterOf(t *testing.T, name string, cfg *rbachttp.RBAC) *hcm.HttpFilter {
	a, err := anypb.New(cfg)
	require.NoError(t, err)
	return &hcm.HttpFilter{Name: name, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}}
}

func rules(action rbacpb.RBAC_Action, policies map[string]*rbacpb.Policy) *rbachttp.RBAC {
	return &rbachttp.RBAC{Rules: &rbacpb.RBAC{Action: action, Policies: policies}}
}

func policy(perm *rbacpb.Permission, id *rbacpb.Principal) *rbacpb.Policy {
	return &rbacpb.Policy{Permissions: []*rbacpb.Permission{perm}, Principals: []*rbacpb.Principal{id}}
}

var (
	anyPerm = &rbacpb.Permission{Rule: &rbacpb.Permission_Any{Any: true}}
	anyID   = &rbacpb.Principal{Identifier: &rbacpb.Principal_Any{Any: true}}
)

func header(name string, m *routepb.HeaderMatcher) *routepb.HeaderMatcher { m.Name = name; return m }
func str(m *matcherpb.StringMatcher) *routepb.HeaderMatcher {
	return &routepb.HeaderMatcher{HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: m}}
}
func exact(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: s}}
}
func regex(re string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: re}}}
}
func headerPerm(m *routepb.HeaderMatcher) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: m}}
}
func pathPerm(m *matcherpb.StringMatcher) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherpb.PathMatcher{Rule: &matcherpb.PathMatcher_Path{Path: m}}}}
}
func cidr(ip string, bits uint32) *core.CidrRange {
	return &core.CidrRange{AddressPrefix: ip, PrefixLen: wrapperspb.UInt32(bits)}
}
func authenticated(m *matcherpb.StringMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{Authenticated: &rbacpb.Principal_Authenticated{PrincipalName: m}}}
}
func port(p uint32) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPort{DestinationPort: p}}
}

func present(p bool) *routepb.HeaderMatcher {
	return &routepb.HeaderMatcher{HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: p}}
}

func TestAuthorizeMatchers(t *testing.T) {
	inverted := func(m *routepb.HeaderMatcher) *routepb.HeaderMatcher { m.InvertMatch = true; return m }
	prefix := &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Prefix{Prefix: "/V1/"}, IgnoreCase: true}
	for _, tc := range []struct {
		name  string
		perm  *rbacpb.Permission
		id    *rbacpb.Principal
		match bool
	}{
		{"any", anyPerm, anyID, true},
		{":method exact", headerPerm(header(":method", str(exact("GET")))), anyID, true},
		{":method exact is case-sensitive", headerPerm(header(":method", str(exact("get")))), anyID, false},
		{":authority ignore_case", headerPerm(header(":authority", str(&matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "API.example.com"}, IgnoreCase: true}))), anyID, true},
		{":path header keeps the query", headerPerm(header(":path", str(&matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Suffix{Suffix: "id=7"}}))), anyID, true},
		{"contains", headerPerm(header("x-team", str(&matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Contains{Contains: "lu"}}))), anyID, true},
		{"repeated values joined with ','", headerPerm(header("accept", str(exact("a,b")))), anyID, true},
		{"safe_regex matches the whole value", headerPerm(header("x-team", str(regex("bl")))), anyID, false},
		{"safe_regex", headerPerm(header("x-team", str(regex("bl.*")))), anyID, true},
		{"present_match", headerPerm(header("x-team", present(true))), anyID, true},
		{"present_match of a missing header", headerPerm(header("x-missing", present(true))), anyID, false},
		{"present_match: false of a missing header", headerPerm(header("x-missing", present(false))), anyID, true},
		{"present_match inverted, of a missing header", headerPerm(inverted(header("x-missing", present(true)))), anyID, true},
		{"no specifier is present", headerPerm(&routepb.HeaderMatcher{Name: "x-missing"}), anyID, false},
		{"inverted, a missing header still does not match", headerPerm(inverted(header("x-missing", str(exact("v"))))), anyID, false},
		{"inverted", headerPerm(inverted(header("x-team", str(exact("red"))))), anyID, true},
		{"treat_missing_header_as_empty", headerPerm(&routepb.HeaderMatcher{Name: "x-missing", TreatMissingHeaderAsEmpty: true,
			HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: exact("")}}), anyID, true},
		{"range_match", headerPerm(&routepb.HeaderMatcher{Name: "x-count", HeaderMatchSpecifier: &routepb.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 40, End: 42}}}), anyID, false},
		{"deprecated exact_match, empty: any value", headerPerm(&routepb.HeaderMatcher{Name: "x-team", HeaderMatchSpecifier: &routepb.HeaderMatcher_ExactMatch{}}), anyID, true},
		{"deprecated suffix_match", headerPerm(&routepb.HeaderMatcher{Name: "x-team", HeaderMatchSpecifier: &routepb.HeaderMatcher_SuffixMatch{SuffixMatch: "ue"}}), anyID, true},
		{"url_path drops the query", pathPerm(exact("/v1/items")), anyID, true},
		{"url_path with the query", pathPerm(exact("/v1/items?id=7")), anyID, false},
		{"url_path prefix ignore_case", pathPerm(prefix), anyID, true},
		{"destination_port", port(8080), anyID, true},
		{"another destination_port", port(9090), anyID, false},
		{"destination_port_range is [start, end)", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPortRange{DestinationPortRange: &typev3.Int32Range{Start: 8000, End: 8080}}}, anyID, false},
		{"destination_ip", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: cidr("10.0.0.0", 24)}}, anyID, true},
		{"destination_ip outside", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: cidr("10.0.1.0", 24)}}, anyID, false},
		{"not_rule", &rbacpb.Permission{Rule: &rbacpb.Permission_NotRule{NotRule: anyPerm}}, anyID, false},
		{"or_rules", &rbacpb.Permission{Rule: &rbacpb.Permission_OrRules{OrRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{port(1), port(8080)}}}}, anyID, true},
		{"and_rules", &rbacpb.Permission{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{port(8080), headerPerm(header(":method", str(exact("POST"))))}}}}, anyID, false},
		{"and_rules decide without an unknown SNI", &rbacpb.Permission{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{
			{Rule: &rbacpb.Permission_RequestedServerName{RequestedServerName: exact("api.example.com")}}, port(1)}}}}, anyID, false},
		{"authenticated", anyPerm, authenticated(exact(clientSPIFFE)), true},
		{"authenticated as another", anyPerm, authenticated(exact("spiffe://cluster.local/ns/team-b/sa/client")), false},
		{"authenticated by Istio's serviceAccount regex", anyPerm, authenticated(regex(`spiffe://.+/ns/egresslab/(.+/|)sa/client(/.+)?`)), true},
		{"authenticated, any peer", anyPerm, authenticated(nil), true},
		{"direct_remote_ip", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.1.0.0", 16)}}, true},
		{"source_ip", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_SourceIp{SourceIp: cidr("10.2.0.0", 16)}}, false},
		{"remote_ip", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: cidr("10.1.2.3", 32)}}, true},
		{"principal header", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_Header{Header: header("x-team", str(exact("blue")))}}, true},
		{"principal url_path", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_UrlPath{UrlPath: &matcherpb.PathMatcher{Rule: &matcherpb.PathMatcher_Path{Path: exact("/v2")}}}}, false},
		{"not_id", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_NotId{NotId: authenticated(exact(clientSPIFFE))}}, false},
		{"and_ids", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_AndIds{AndIds: &rbacpb.Principal_Set{Ids: []*rbacpb.Principal{anyID, authenticated(exact("x"))}}}}, false},
		{"or_ids", anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_OrIds{OrIds: &rbacpb.Principal_Set{Ids: []*rbacpb.Principal{authenticated(exact("x")), anyID}}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &hcm.HttpConnectionManager{HttpFilters: []*hcm.HttpFilter{filterOf(t, "rbac", rules(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"p": policy(tc.perm, tc.id)}))}}
			d, err := Authorize(h, authzRequest)
			require.NoError(t, err)
			assert.Equal(t, !tc.match, d.Denied)
		})
	}
}

func TestAuthorizeActions(t *testing.T) {
	match, miss := policy(anyPerm, anyID), policy(port(1), anyID)
	for _, tc := range []struct {
		name    string
		filters []*rbachttp.RBAC
		policy  string // "" allowed
	}{
		{"no rules: no engine", []*rbachttp.RBAC{{ShadowRules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{"p": match}}}}, ""},
		{"ALLOW without policies", []*rbachttp.RBAC{rules(rbacpb.RBAC_ALLOW, nil)}, "none"},
		{"ALLOW, one policy matches", []*rbachttp.RBAC{rules(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"a": miss, "b": match})}, ""},
		{"DENY names the first policy by name", []*rbachttp.RBAC{rules(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{"zz": match, "ab": match, "b": miss})}, "ab"},
		{"DENY, no policy matches", []*rbachttp.RBAC{rules(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{"a": miss})}, ""},
		{"LOG never denies", []*rbachttp.RBAC{rules(rbacpb.RBAC_LOG, map[string]*rbacpb.Policy{"a": match})}, ""},
		{"the first filter that denies decides", []*rbachttp.RBAC{rules(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"a": miss}), rules(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{"d": match})}, "none"},
		{"a later filter denies", []*rbachttp.RBAC{rules(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{"a": miss}), rules(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{"d": match})}, "d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &hcm.HttpConnectionManager{}
			for _, f := range tc.filters {
				h.HttpFilters = append(h.HttpFilters, filterOf(t, "custom-name", f))
			}
			d, err := Authorize(h, authzRequest)
			require.NoError(t, err)
			assert.Equal(t, AuthzDecision{Denied: tc.policy != "", Policy: tc.policy}, d)
		})
	}
	t.Run("found by type, not name", func(t *testing.T) {
		router, err := anypb.New(&routerv3.Router{})
		require.NoError(t, err)
		h := &hcm.HttpConnectionManager{HttpFilters: []*hcm.HttpFilter{{Name: "envoy.filters.http.rbac", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: router}}}}
		d, err := Authorize(h, authzRequest)
		require.NoError(t, err)
		assert.False(t, d.Denied)
	})
	assert.Equal(t, "rbac_access_denied_matched_policy[a_b__c]", AuthzDecision{Denied: true, Policy: "a b\t c"}.Details())
}

func TestAuthorizeRefusesWhatItDoesNotModel(t *testing.T) {
	deny := func(p *rbacpb.Policy) *rbachttp.RBAC {
		return rules(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{"p": p})
	}
	sni := &rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{RequestedServerName: exact("api.example.com")}}
	withPath := func(path string) AuthzRequest { r := authzRequest; r.Path = path; return r }
	for _, tc := range []struct {
		name string
		cfg  *rbachttp.RBAC
		h    func(*hcm.HttpConnectionManager)
		r    AuthzRequest
		want string
	}{
		{"metadata", deny(policy(&rbacpb.Permission{Rule: &rbacpb.Permission_Metadata{Metadata: &matcherpb.MetadataMatcher{Filter: "f",
			Path: []*matcherpb.MetadataMatcher_PathSegment{{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: "k"}}}, Value: &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}}}}}, anyID)),
			nil, authzRequest, `rules.policies["p"].permissions[0].metadata: not modelled`},
		{"filter_state", deny(policy(anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_FilterState{FilterState: &matcherpb.FilterStateMatcher{Key: "io.istio.peer_principal",
			Matcher: &matcherpb.FilterStateMatcher_StringMatch{StringMatch: exact(clientSPIFFE)}}}})), nil, authzRequest, "principals[0].filter_state: not modelled"},
		{"a CEL condition", deny(&rbacpb.Policy{Permissions: []*rbacpb.Permission{anyPerm}, Principals: []*rbacpb.Principal{anyID}, CelConfig: &core.CelExpressionConfig{}}),
			nil, authzRequest, `rules.policies["p"].cel_config: not modelled`},
		{"requested_server_name", deny(policy(sni, anyID)), nil, authzRequest, "requested_server_name: the connection's SNI is not part of AuthzRequest"},
		{"and_rules with an unknown SNI, the rest matching", deny(policy(&rbacpb.Permission{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{sni, port(8080)}}}}, anyID)),
			nil, authzRequest, "requested_server_name"},
		{"not_rule of an unknown SNI", deny(policy(&rbacpb.Permission{Rule: &rbacpb.Permission_NotRule{NotRule: sni}}, anyID)), nil, authzRequest, "requested_server_name"},
		{"an unknown destination IP", deny(policy(&rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: cidr("10.0.0.0", 8)}}, anyID)),
			nil, AuthzRequest{Method: "GET"}, "DestinationIP is unknown"},
		{"remote_ip after X-Forwarded-For", deny(policy(anyPerm, &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: cidr("10.0.0.0", 8)}})),
			nil, AuthzRequest{RemoteIP: "10.0.0.1", Headers: http.Header{"X-Forwarded-For": {"1.2.3.4"}}}, "X-Forwarded-For is not modelled"},
		{"a header Envoy sets", deny(policy(headerPerm(header("x-forwarded-client-cert", present(true))), anyID)), nil, authzRequest, "set or rewritten by Envoy's connection manager"},
		{"a header of a request whose headers are not known (sim)", deny(policy(headerPerm(header("user-agent", present(true))), anyID)), nil,
			AuthzRequest{Method: "GET", Authority: "api.example.com", Path: "/"}, `the header "user-agent"`},
		{":scheme", deny(policy(headerPerm(header(":scheme", str(exact("https")))), anyID)), nil, authzRequest, "pseudo-header :scheme is not part of AuthzRequest"},
		{"any TLS peer, unknown whether TLS", deny(policy(anyPerm, authenticated(nil))), nil, AuthzRequest{}, "does not say whether the connection was TLS"},
		{"ignore_case with safe_regex", deny(policy(pathPerm(&matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: "/.*"}}, IgnoreCase: true}), anyID)),
			nil, authzRequest, "Envoy rejects ignore_case with safe_regex"},
		{"a regex Go's RE2 cannot read", deny(policy(pathPerm(regex("(unclosed")), anyID)), nil, authzRequest, "url_path.path.safe_regex"},
		{"Envoy's proto constraints", deny(&rbacpb.Policy{Principals: []*rbacpb.Principal{anyID}}), nil, authzRequest, "Envoy would reject this config"},
		{"a path normalization would rewrite", deny(policy(pathPerm(exact("/a/b")), anyID)),
			func(h *hcm.HttpConnectionManager) { h.NormalizePath = wrapperspb.Bool(true) }, withPath("/a/./b"), "path normalization would rewrite it first"},
		{"a per-route override", deny(policy(anyPerm, anyID)), func(h *hcm.HttpConnectionManager) {
			h.RouteSpecifier = &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &routepb.RouteConfiguration{VirtualHosts: []*routepb.VirtualHost{{
				Name: "vh", Domains: []string{"*"}, TypedPerFilterConfig: map[string]*anypb.Any{"rbac": {}}}}}}
		}, authzRequest, `typed_per_filter_config["rbac"]`},
		{"a TypedStruct", &rbachttp.RBAC{}, func(h *hcm.HttpConnectionManager) {
			a, _ := anypb.New(&udpatype.TypedStruct{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"})
			h.HttpFilters[0].ConfigType = &hcm.HttpFilter_TypedConfig{TypedConfig: a}
		}, authzRequest, "TypedStruct is not modelled"},
		{"ECDS", &rbachttp.RBAC{}, func(h *hcm.HttpConnectionManager) {
			h.HttpFilters[0].ConfigType = &hcm.HttpFilter_ConfigDiscovery{ConfigDiscovery: &core.ExtensionConfigSource{
				TypeUrls: []string{"type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}}}
		}, authzRequest, "config_discovery"},
		{"a port the connection manager strips", deny(policy(headerPerm(header(":authority", str(exact("api.example.com")))), anyID)),
			func(h *hcm.HttpConnectionManager) {
				h.StripPortMode = &hcm.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true}
			},
			AuthzRequest{Authority: "api.example.com:8080"}, "rewrites it before the filters"},
		{"a principal_name that matches the empty string", deny(policy(anyPerm, authenticated(regex("(|x)")))), nil, authzRequest, "matches the empty string"},
		{"the unified matcher", &rbachttp.RBAC{Matcher: &xdsmatcher.Matcher{}}, nil, authzRequest, "matcher: not modelled"},
		{"a disabled filter", deny(policy(anyPerm, anyID)), func(h *hcm.HttpConnectionManager) { h.HttpFilters[0].Disabled = true }, authzRequest, "disabled"},
		{"CUSTOM's ext_authz", &rbachttp.RBAC{}, func(h *hcm.HttpConnectionManager) {
			a, _ := anypb.New(&extauthz.ExtAuthz{})
			h.HttpFilters = append(h.HttpFilters, &hcm.HttpFilter{Name: "ext", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}})
		}, authzRequest, "ext_authz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &hcm.HttpConnectionManager{HttpFilters: []*hcm.HttpFilter{filterOf(t, "rbac", tc.cfg)}}
			if tc.h != nil {
				tc.h(h)
			}
			_, err := Authorize(h, tc.r)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// The same path with normalization off is read as it is.
	h := &hcm.HttpConnectionManager{HttpFilters: []*hcm.HttpFilter{filterOf(t, "rbac", deny(policy(pathPerm(exact("/a/./b")), anyID)))}}
	d, err := Authorize(h, withPath("/a/./b"))
	require.NoError(t, err)
	assert.Equal(t, "p", d.Policy)
}
