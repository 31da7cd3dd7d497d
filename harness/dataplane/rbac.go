package dataplane

// An evaluator of Envoy's RBAC HTTP filter (envoy.filters.http.rbac) as Istio configures
// it for an AuthorizationPolicy. Istio's simulator evaluates no HTTP filters, so without
// this a call an AuthorizationPolicy refuses would be judged by its route alone. It is
// shared by every backend that runs no Envoy, so their verdicts cannot drift apart.
//
// It must never be more capable than Envoy: a field it does not model is an error naming
// the field, never a guess. It follows Envoy's source:
//
//   - source/extensions/filters/http/rbac/rbac_filter.cc, decodeHeaders: no engine (no
//     rules) allows; shadow rules only record; a denial answers 403 with response details
//     responseDetail(policy or "none") (source/extensions/filters/common/rbac/utility.cc).
//   - source/extensions/filters/common/rbac/engine_impl.cc, handleAction and
//     checkPolicyMatch: ALLOW allows iff a policy matches, DENY denies iff one does, LOG
//     always allows; policies are a std::map (engine_impl.h), so the first match in name
//     order is the effective policy.
//   - source/extensions/filters/common/rbac/matchers.cc, Matcher::create and each
//     matcher's matches: a policy matches iff one of its permissions and one of its
//     principals do (PolicyMatcher::matches).
//   - source/common/http/header_utility.cc, HeaderData and matchHeaders; and
//     source/common/common/matchers.h, StringMatcherImpl and PathMatcher.
//
// And what Istio generates: pilot/pkg/security/authz/builder/builder.go (build: one RBAC
// filter per action, AUDIT (LOG), DENY, then ALLOW; policyName: ns[NS]-policy[NAME]-rule[N])
// and pilot/pkg/security/authz/model (model.go New: methods and hosts as :method and
// :authority header matchers, paths as url_path, principals as authenticated).

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	xdstype "github.com/cncf/xds/go/xds/type/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egresslab/egresslab/harness/outcome"
)

// AuthzRequest is what Envoy's RBAC filter reads of one HTTP request and its connection.
type AuthzRequest struct {
	Method    string // ":method", e.g. GET
	Authority string // ":authority" (Host)
	Path      string // ":path", with query
	// Headers are the other request headers; nil when they are not known (sim: the app's
	// own headers are not part of a call), and then a rule that reads one is an error.
	Headers http.Header
	// Principal is the URI SAN of the peer's certificate (spiffe://TRUST_DOMAIN/ns/NS/sa/SA) when the
	// connection is mutual TLS that the listener terminated; "" otherwise (plain text, or TLS without a client certificate).
	// The certificate is taken to be one Istio's CA issues: that URI SAN, no DNS SAN and an
	// empty subject (security/pkg/pki/util/generate_cert.go), the other names Envoy tries.
	Principal string
	// DestinationPort is the port the connection was accepted on (Envoy's downstream local
	// address: a gateway's listener port, a captured call's original port); 0 when unknown.
	DestinationPort int
	// DestinationIP and RemoteIP may be "" when unknown; a rule that needs an unknown one is an error.
	// RemoteIP is the downstream peer's address.
	DestinationIP, RemoteIP string
}

// AuthzDecision is what the RBAC filters of one HTTP connection manager decided.
type AuthzDecision struct {
	Denied bool
	// Policy is the policy ID Envoy names in its response details: the DENY policy that matched, or "none" when an ALLOW filter matched no policy.
	Policy string
}

// Details is Envoy's response code details for a denial, outcome.RBACDetailsPrefix +
// Policy + "]" (the form the kind backend reads in a gateway's log); "" when allowed.
// As Envoy's responseDetail (filters/common/rbac/utility.cc) does, each whitespace
// character of the policy ID becomes '_', to keep access log fields apart.
func (d AuthzDecision) Details() string {
	if !d.Denied {
		return ""
	}
	return outcome.RBACDetailsPrefix + strings.Map(func(r rune) rune {
		if strings.ContainsRune(" \t\n\v\f\r", r) {
			return '_'
		}
		return r
	}, d.Policy) + "]"
}

// The filters Authorize recognises, by the full name of their typed config's message: a
// filter's name is only a label (Envoy picks the extension by its config's type).
var (
	authzRBACType     = string((&rbachttp.RBAC{}).ProtoReflect().Descriptor().FullName())
	authzExtAuthzType = string((&extauthz.ExtAuthz{}).ProtoReflect().Descriptor().FullName())
)

// Authorize runs the RBAC HTTP filters of h in their order (each envoy.filters.http.rbac, found by its typed config's type, not its name), as Envoy does before the router: the first that denies decides.
//
// An ext_authz filter (an AuthorizationPolicy with action CUSTOM) reached before any
// denial is an error: the external service decides, and that is not modelled. Other
// filters (jwt_authn, wasm, lua, ...) are not run, and neither caller (sim's
// FollowToGateway, the stand-in) runs them: the labs' gateways have none but Istio's
// metadata exchange. Per-route overrides (RBACPerRoute) are an error when h's inline
// route_config has one; routes h gets over RDS are not looked at (Istio generates no
// RBACPerRoute).
func Authorize(h *hcm.HttpConnectionManager, r AuthzRequest) (AuthzDecision, error) {
	in := &authzInput{AuthzRequest: r, hcm: h}
	for i, f := range h.GetHttpFilters() {
		at := fmt.Sprintf("http_filters[%d] %q", i, f.GetName())
		kind, err := authzFilterType(f)
		if err != nil {
			return AuthzDecision{}, fmt.Errorf("%s: %w", at, err)
		}
		switch kind {
		case authzExtAuthzType:
			return AuthzDecision{}, fmt.Errorf("%s: ext_authz (an AuthorizationPolicy with action CUSTOM: an external service decides) is not modelled", at)
		case authzRBACType:
			d, err := authzFilter(f, in)
			if err != nil {
				return AuthzDecision{}, fmt.Errorf("%s: %w", at, err)
			}
			if d.Denied {
				return d, nil
			}
		}
	}
	return AuthzDecision{}, nil
}

// authzFilterType is the message name of f's config; "" when it has none inline. A config
// Authorize cannot see through (ECDS, a TypedStruct) is an error only when it would be
// an RBAC or ext_authz filter.
func authzFilterType(f *hcm.HttpFilter) (string, error) {
	relevant := func(typeURL string) bool {
		name := typeURL[strings.LastIndex(typeURL, "/")+1:]
		return name == authzRBACType || name == authzExtAuthzType
	}
	if cd := f.GetConfigDiscovery(); cd != nil {
		if slices.ContainsFunc(cd.GetTypeUrls(), relevant) {
			return "", fmt.Errorf("config_discovery (a config from ECDS) is not modelled")
		}
		return "", nil
	}
	tc := f.GetTypedConfig()
	if tc == nil {
		return "", nil
	}
	var inner interface{ GetTypeUrl() string }
	switch name := string(tc.MessageName()); name {
	case string((&xdstype.TypedStruct{}).ProtoReflect().Descriptor().FullName()):
		inner = &xdstype.TypedStruct{}
	case string((&udpatype.TypedStruct{}).ProtoReflect().Descriptor().FullName()):
		inner = &udpatype.TypedStruct{}
	default:
		return name, nil
	}
	if err := tc.UnmarshalTo(inner.(proto.Message)); err != nil {
		return "", fmt.Errorf("typed_config: %w", err)
	}
	if relevant(inner.GetTypeUrl()) {
		return "", fmt.Errorf("typed_config as a TypedStruct is not modelled")
	}
	return "", nil
}

// authzFilter is one RBAC filter's decision (rbac_filter.cc decodeHeaders).
func authzFilter(f *hcm.HttpFilter, in *authzInput) (AuthzDecision, error) {
	if f.GetDisabled() {
		return AuthzDecision{}, fmt.Errorf("disabled (a filter only the routes that enable it run) is not modelled")
	}
	if err := authzPerRoute(in.hcm.GetRouteConfig(), f.GetName()); err != nil {
		return AuthzDecision{}, err
	}
	var cfg rbachttp.RBAC
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		return AuthzDecision{}, fmt.Errorf("typed_config: %w", err)
	}
	// Envoy refuses a config its proto constraints refuse (min one permission, any: true,
	// non-empty prefix, ...): there is no such filter to evaluate.
	if err := cfg.Validate(); err != nil {
		return AuthzDecision{}, fmt.Errorf("Envoy would reject this config: %w", err)
	}
	// Shadow rules and matchers only record; stat prefixes only name stats.
	if err := authzOnly("", &cfg, "rules", "shadow_rules", "shadow_matcher",
		"rules_stat_prefix", "shadow_rules_stat_prefix", "track_per_rule_stats"); err != nil {
		return AuthzDecision{}, err
	}
	rules := cfg.GetRules()
	if rules == nil {
		return AuthzDecision{}, nil // "no engine, allowed by default"
	}
	// Audit logging only logs.
	if err := authzOnly("rules", rules, "action", "policies", "audit_logging_options"); err != nil {
		return AuthzDecision{}, err
	}
	action := rules.GetAction()
	switch action {
	case rbacpb.RBAC_LOG:
		return AuthzDecision{}, nil // LOG sets a log hint and always allows
	case rbacpb.RBAC_ALLOW, rbacpb.RBAC_DENY:
	default:
		return AuthzDecision{}, fmt.Errorf("rules.action %v is not modelled", action)
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for name := range rules.GetPolicies() {
		names = append(names, name)
	}
	sort.Strings(names) // Envoy's engine keeps them in a std::map
	policies := make([]authzMatch, len(names))
	for i, name := range names {
		m, err := authzPolicy(rules.GetPolicies()[name], fmt.Sprintf("rules.policies[%q]", name))
		if err != nil {
			return AuthzDecision{}, err
		}
		policies[i] = m
	}
	var unknown error // a policy whose match needs what the request does not say
	for i, match := range policies {
		ok, err := match(in)
		switch {
		case err != nil && action == rbacpb.RBAC_DENY:
			return AuthzDecision{}, err // it may be the policy Envoy names
		case err != nil:
			if unknown == nil {
				unknown = err
			}
		case ok && action == rbacpb.RBAC_DENY:
			return AuthzDecision{Denied: true, Policy: names[i]}, nil
		case ok:
			return AuthzDecision{}, nil
		}
	}
	if action == rbacpb.RBAC_DENY {
		return AuthzDecision{}, nil
	}
	if unknown != nil {
		return AuthzDecision{}, unknown
	}
	return AuthzDecision{Denied: true, Policy: "none"}, nil
}

// authzPerRoute refuses an RBACPerRoute (or a per-route disabling) for the filter called
// name in an inline route config: which route a request takes is not modelled here.
func authzPerRoute(rc *routepb.RouteConfiguration, name string) error {
	has := func(m map[string]*anypb.Any) bool { _, ok := m[name]; return ok }
	found := has(rc.GetTypedPerFilterConfig())
	for _, vh := range rc.GetVirtualHosts() {
		found = found || has(vh.GetTypedPerFilterConfig())
		for _, r := range vh.GetRoutes() {
			found = found || has(r.GetTypedPerFilterConfig())
			for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
				found = found || has(wc.GetTypedPerFilterConfig())
			}
		}
	}
	if found {
		return fmt.Errorf("route_config: typed_per_filter_config[%q] (a per-route RBAC override) is not modelled", name)
	}
	return nil
}

// authzMatch is a compiled permission or principal. An error means the request does not
// say what the match needs; And, Or and Not still decide when the rest does (matchers
// are pure, so Envoy's short-circuit order does not change the answer).
type authzMatch func(*authzInput) (bool, error)

func authzConst(v bool) authzMatch { return func(*authzInput) (bool, error) { return v, nil } }

// authzAll and authzAny are and_rules/and_ids and or_rules/or_ids (AndMatcher, OrMatcher).
func authzAll(ms []authzMatch) authzMatch { return authzSet(ms, false) }
func authzAny(ms []authzMatch) authzMatch { return authzSet(ms, true) }

// authzSet is decided by the first match that answers decisive (true for Or, false for
// And); failing one, a match that could not answer makes the set unknown too.
func authzSet(ms []authzMatch, decisive bool) authzMatch {
	return func(in *authzInput) (bool, error) {
		var unknown error
		for _, m := range ms {
			if ok, err := m(in); err != nil && unknown == nil {
				unknown = err
			} else if err == nil && ok == decisive {
				return decisive, nil
			}
		}
		return !decisive && unknown == nil, unknown
	}
}

func authzNot(m authzMatch) authzMatch {
	return func(in *authzInput) (bool, error) {
		ok, err := m(in)
		return !ok && err == nil, err
	}
}

// authzEach compiles each of xs (at at[i]).
func authzEach[T any](xs []T, at string, compile func(T, string) (authzMatch, error)) ([]authzMatch, error) {
	ms := make([]authzMatch, len(xs))
	for i, x := range xs {
		m, err := compile(x, fmt.Sprintf("%s[%d]", at, i))
		if err != nil {
			return nil, err
		}
		ms[i] = m
	}
	return ms, nil
}

// authzPolicy matches iff one of its permissions and one of its principals match
// (PolicyMatcher::matches); a CEL condition is not modelled.
func authzPolicy(p *rbacpb.Policy, at string) (authzMatch, error) {
	if err := authzOnly(at, p, "permissions", "principals"); err != nil {
		return nil, err
	}
	perms, err := authzEach(p.GetPermissions(), at+".permissions", authzPermission)
	if err != nil {
		return nil, err
	}
	ids, err := authzEach(p.GetPrincipals(), at+".principals", authzPrincipal)
	if err != nil {
		return nil, err
	}
	return authzAll([]authzMatch{authzAny(perms), authzAny(ids)}), nil
}

// authzPermission is Matcher::create for a Permission (matchers.cc).
func authzPermission(p *rbacpb.Permission, at string) (authzMatch, error) {
	switch r := p.GetRule().(type) {
	case *rbacpb.Permission_Any:
		return authzConst(true), nil
	case *rbacpb.Permission_AndRules:
		ms, err := authzEach(r.AndRules.GetRules(), at+".and_rules.rules", authzPermission)
		return authzAll(ms), err
	case *rbacpb.Permission_OrRules:
		ms, err := authzEach(r.OrRules.GetRules(), at+".or_rules.rules", authzPermission)
		return authzAny(ms), err
	case *rbacpb.Permission_NotRule:
		m, err := authzPermission(r.NotRule, at+".not_rule")
		return authzNot(m), err
	case *rbacpb.Permission_Header:
		return authzHeader(r.Header, at+".header")
	case *rbacpb.Permission_UrlPath:
		return authzURLPath(r.UrlPath, at+".url_path")
	case *rbacpb.Permission_DestinationIp:
		cidr, err := authzCIDR(r.DestinationIp, at+".destination_ip")
		return func(in *authzInput) (bool, error) {
			return authzIPIn(cidr, in.DestinationIP, at+".destination_ip", "DestinationIP")
		}, err
	case *rbacpb.Permission_DestinationPort:
		return func(in *authzInput) (bool, error) {
			if in.DestinationPort == 0 {
				return false, fmt.Errorf("%s.destination_port: the request's DestinationPort is unknown", at)
			}
			return in.DestinationPort == int(r.DestinationPort), nil
		}, nil
	case *rbacpb.Permission_DestinationPortRange:
		// PortRangeMatcher's constructor refuses these; matches is start <= port < end.
		start, end := r.DestinationPortRange.GetStart(), r.DestinationPortRange.GetEnd()
		if start < 0 || start > 65536 || end < 0 || end > 65536 || start >= end {
			return nil, fmt.Errorf("%s.destination_port_range: Envoy rejects [%d, %d)", at, start, end)
		}
		return func(in *authzInput) (bool, error) {
			if in.DestinationPort == 0 {
				return false, fmt.Errorf("%s.destination_port_range: the request's DestinationPort is unknown", at)
			}
			return int(start) <= in.DestinationPort && in.DestinationPort < int(end), nil
		}, nil
	case *rbacpb.Permission_RequestedServerName:
		if _, err := authzString(r.RequestedServerName, at+".requested_server_name"); err != nil {
			return nil, err
		}
		return func(*authzInput) (bool, error) {
			return false, fmt.Errorf("%s: the connection's SNI is not part of AuthzRequest", at+".requested_server_name")
		}, nil
	default: // metadata, sourced_metadata, matcher, uri_template, and any added later
		return nil, authzOnly(at, p)
	}
}

// authzPrincipal is Matcher::create for a Principal (matchers.cc).
func authzPrincipal(p *rbacpb.Principal, at string) (authzMatch, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacpb.Principal_Any:
		return authzConst(true), nil
	case *rbacpb.Principal_AndIds:
		ms, err := authzEach(id.AndIds.GetIds(), at+".and_ids.ids", authzPrincipal)
		return authzAll(ms), err
	case *rbacpb.Principal_OrIds:
		ms, err := authzEach(id.OrIds.GetIds(), at+".or_ids.ids", authzPrincipal)
		return authzAny(ms), err
	case *rbacpb.Principal_NotId:
		m, err := authzPrincipal(id.NotId, at+".not_id")
		return authzNot(m), err
	case *rbacpb.Principal_Authenticated_:
		return authzAuthenticated(id.Authenticated, at+".authenticated")
	case *rbacpb.Principal_Header:
		return authzHeader(id.Header, at+".header")
	case *rbacpb.Principal_UrlPath:
		return authzURLPath(id.UrlPath, at+".url_path")
	case *rbacpb.Principal_DirectRemoteIp, *rbacpb.Principal_SourceIp, *rbacpb.Principal_RemoteIp:
		// source_ip is the connection's peer, direct_remote_ip the stream's direct peer,
		// remote_ip the stream's peer after X-Forwarded-For (IPMatcher::matches).
		field, cidrRange, remote := "direct_remote_ip", p.GetDirectRemoteIp(), false
		if c := p.GetSourceIp(); c != nil {
			field, cidrRange = "source_ip", c
		} else if c := p.GetRemoteIp(); c != nil {
			field, cidrRange, remote = "remote_ip", c, true
		}
		cidr, err := authzCIDR(cidrRange, at+"."+field)
		return func(in *authzInput) (bool, error) {
			if remote {
				if err := in.remoteIsPeer(); err != nil {
					return false, fmt.Errorf("%s.%s: %w", at, field, err)
				}
			}
			return authzIPIn(cidr, in.RemoteIP, at+"."+field, "RemoteIP")
		}, err
	default: // metadata, filter_state, sourced_metadata, custom, and any added later
		return nil, authzOnly(at, p)
	}
}

// authzAuthenticated is AuthenticatedMatcher::matches: no TLS never matches; no
// principal_name matches any TLS connection; otherwise the peer certificate's URI SANs,
// then its DNS SANs, then its subject are tried.
func authzAuthenticated(a *rbacpb.Principal_Authenticated, at string) (authzMatch, error) {
	if err := authzOnly(at, a, "principal_name"); err != nil {
		return nil, err
	}
	if a.GetPrincipalName() == nil {
		return func(in *authzInput) (bool, error) {
			if in.Principal != "" {
				return true, nil
			}
			return false, fmt.Errorf("%s: with no principal_name Envoy matches any TLS connection, even one without a client certificate, "+
				"and an empty Principal does not say whether the connection was TLS", at)
		}, nil
	}
	match, err := authzString(a.GetPrincipalName(), at+".principal_name")
	if err != nil {
		return nil, err
	}
	matchesEmpty := match("")
	return func(in *authzInput) (bool, error) {
		if in.Principal != "" && match(in.Principal) {
			return true, nil
		}
		if matchesEmpty { // the empty subject of an Istio certificate, or of no certificate on TLS
			return false, fmt.Errorf("%s.principal_name matches the empty string: Envoy's answer rests on the certificate's subject "+
				"and on whether the connection is TLS, which AuthzRequest does not carry", at)
		}
		return false, nil
	}, nil
}

// authzHeader is HeaderUtility::matchHeaders: a missing header matches only present_match:
// false (or, inverted, present_match: true) unless treat_missing_header_as_empty; values
// of a repeated header are joined with ","; invert_match inverts the rest.
func authzHeader(hm *routepb.HeaderMatcher, at string) (authzMatch, error) {
	if err := authzOnly(at, hm, "name", "invert_match", "treat_missing_header_as_empty", "exact_match", "safe_regex_match",
		"range_match", "present_match", "prefix_match", "suffix_match", "contains_match", "string_match"); err != nil {
		return nil, err
	}
	name := strings.ToLower(hm.GetName())
	if err := authzReadableHeader(name); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	presence, present := false, true // a presence test, and the presence it wants
	var value func(string) bool
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case nil: // no specifier: present
		presence = true
	case *routepb.HeaderMatcher_PresentMatch:
		presence, present = true, s.PresentMatch
	case *routepb.HeaderMatcher_ExactMatch:
		value = func(v string) bool { return s.ExactMatch == "" || v == s.ExactMatch }
	case *routepb.HeaderMatcher_PrefixMatch:
		value = func(v string) bool { return strings.HasPrefix(v, s.PrefixMatch) }
	case *routepb.HeaderMatcher_SuffixMatch:
		value = func(v string) bool { return strings.HasSuffix(v, s.SuffixMatch) }
	case *routepb.HeaderMatcher_ContainsMatch:
		value = func(v string) bool { return strings.Contains(v, s.ContainsMatch) }
	case *routepb.HeaderMatcher_RangeMatch: // absl::SimpleAtoi, then [start, end)
		value = func(v string) bool {
			n, err := strconv.ParseInt(strings.Trim(v, " \t\n\v\f\r"), 10, 64)
			return err == nil && n >= s.RangeMatch.GetStart() && n < s.RangeMatch.GetEnd()
		}
	case *routepb.HeaderMatcher_SafeRegexMatch:
		re, err := authzRegex(s.SafeRegexMatch, at+".safe_regex_match")
		if err != nil {
			return nil, err
		}
		value = re.MatchString
	case *routepb.HeaderMatcher_StringMatch:
		m, err := authzString(s.StringMatch, at+".string_match")
		if err != nil {
			return nil, err
		}
		value = m
	}
	if presence && hm.GetTreatMissingHeaderAsEmpty() {
		return nil, fmt.Errorf("%s: present_match with treat_missing_header_as_empty is not modelled", at)
	}
	invert, asEmpty := hm.GetInvertMatch(), hm.GetTreatMissingHeaderAsEmpty()
	return func(in *authzInput) (bool, error) {
		v, ok, err := in.header(name)
		switch {
		case err != nil:
			return false, fmt.Errorf("%s: %w", at, err)
		case presence:
			return (ok == present) != invert, nil
		case !ok && !asEmpty:
			return false, nil
		}
		return value(v) != invert, nil
	}, nil
}

// authzReadableHeader refuses a header AuthzRequest does not carry as Envoy's filters see
// it: a pseudo-header other than :method, :authority and :path; Host, which Envoy's codec
// turns into :authority; and the headers the connection manager itself sets or rewrites
// before the filters run (x-forwarded-*, x-request-id, x-envoy-*).
func authzReadableHeader(name string) error {
	switch {
	case name == ":method" || name == ":authority" || name == ":path":
		return nil
	case strings.HasPrefix(name, ":"):
		return fmt.Errorf("the pseudo-header %s is not part of AuthzRequest", name)
	case name == "host":
		return fmt.Errorf("host: Envoy keeps the Host header as :authority; a matcher on host is not modelled")
	case strings.HasPrefix(name, "x-forwarded-") || name == "x-request-id" || strings.HasPrefix(name, "x-envoy-"):
		return fmt.Errorf("%s is set or rewritten by Envoy's connection manager before the filters run; not modelled", name)
	}
	return nil
}

// authzURLPath is PathMatcher: the path without its query (or fragment).
func authzURLPath(pm *matcherpb.PathMatcher, at string) (authzMatch, error) {
	if err := authzOnly(at, pm, "path"); err != nil {
		return nil, err
	}
	match, err := authzString(pm.GetPath(), at+".path")
	if err != nil {
		return nil, err
	}
	return func(in *authzInput) (bool, error) {
		p, ok, err := in.path()
		if err != nil {
			return false, fmt.Errorf("%s: %w", at, err)
		}
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		return ok && match(p), nil
	}, nil
}

// authzString is StringMatcherImpl: ignore_case folds ASCII only; safe_regex must match
// the whole value and Envoy rejects it with ignore_case; a custom matcher is not modelled.
func authzString(m *matcherpb.StringMatcher, at string) (func(string) bool, error) {
	if err := authzOnly(at, m, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return nil, err
	}
	fold := func(s string) string { return s }
	if m.GetIgnoreCase() {
		fold = authzASCIILower
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherpb.StringMatcher_Exact:
		return func(v string) bool { return fold(v) == fold(p.Exact) }, nil
	case *matcherpb.StringMatcher_Prefix:
		return func(v string) bool { return strings.HasPrefix(fold(v), fold(p.Prefix)) }, nil
	case *matcherpb.StringMatcher_Suffix:
		return func(v string) bool { return strings.HasSuffix(fold(v), fold(p.Suffix)) }, nil
	case *matcherpb.StringMatcher_Contains:
		return func(v string) bool { return strings.Contains(fold(v), fold(p.Contains)) }, nil
	case *matcherpb.StringMatcher_SafeRegex:
		if m.GetIgnoreCase() {
			return nil, fmt.Errorf("%s: Envoy rejects ignore_case with safe_regex", at)
		}
		re, err := authzRegex(p.SafeRegex, at+".safe_regex")
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	}
	return nil, fmt.Errorf("%s: no match pattern", at)
}

// authzRegex compiles an RE2 regex for a full match (Envoy's CompiledGoogleReMatcher
// uses RE2::FullMatch). Go's regexp reads RE2 syntax; one it cannot read is an error.
func authzRegex(m *matcherpb.RegexMatcher, at string) (*regexp.Regexp, error) {
	if err := authzOnly(at, m, "regex", "google_re2"); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(`^(?:` + m.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%s: %q: %w", at, m.GetRegex(), err)
	}
	return re, nil
}

func authzASCIILower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// authzCIDR is Network::Address::CidrRange: the address masked to prefix_len bits.
func authzCIDR(c *core.CidrRange, at string) (netip.Prefix, error) {
	if err := authzOnly(at, c, "address_prefix", "prefix_len"); err != nil {
		return netip.Prefix{}, err
	}
	addr, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil || int(c.GetPrefixLen().GetValue()) > addr.BitLen() {
		return netip.Prefix{}, fmt.Errorf("%s: Envoy rejects %s/%d", at, c.GetAddressPrefix(), c.GetPrefixLen().GetValue())
	}
	return netip.PrefixFrom(addr, int(c.GetPrefixLen().GetValue())).Masked(), nil
}

func authzIPIn(cidr netip.Prefix, ip, at, field string) (bool, error) {
	if ip == "" {
		return false, fmt.Errorf("%s: the request's %s is unknown", at, field)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false, fmt.Errorf("%s: the request's %s %q is not an IP address", at, field, ip)
	}
	return cidr.Contains(addr), nil
}

// authzOnly refuses the fields set in m (at the path at) that are not known: Authorize
// names what it does not model rather than ignore it.
func authzOnly(at string, m proto.Message, known ...string) error {
	var other []string
	msg := m.ProtoReflect()
	msg.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(known, string(fd.Name())) {
			other = append(other, string(fd.Name()))
		}
		return true
	})
	if len(msg.GetUnknown()) > 0 {
		other = append(other, "(fields unknown to this go-control-plane)")
	}
	if len(other) == 0 {
		return nil
	}
	sort.Strings(other)
	if at != "" {
		at += "."
	}
	return fmt.Errorf("%s%s: not modelled", at, strings.Join(other, ", "))
}

// authzInput is the request as the RBAC filter reads it, after what the connection
// manager h does to it first.
type authzInput struct {
	AuthzRequest
	hcm *hcm.HttpConnectionManager
}

// header is the request's value of the header name (lower case), and whether it has one.
func (in *authzInput) header(name string) (string, bool, error) {
	switch name {
	case ":method":
		return in.Method, in.Method != "", nil
	case ":authority":
		return in.authority()
	case ":path":
		return in.path()
	}
	if in.Headers == nil {
		return "", false, fmt.Errorf("the header %q: the request's headers other than :method, :authority and :path are not known here", name)
	}
	var keys []string
	for k, vs := range in.Headers {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var values []string
	for _, k := range keys {
		values = append(values, in.Headers[k]...)
	}
	return strings.Join(values, ","), len(values) > 0, nil
}

// authority is :authority, unless the connection manager would strip its port or
// trailing dot first (strip_*_host_port, strip_trailing_host_dot), which is not modelled.
func (in *authzInput) authority() (string, bool, error) {
	a := in.Authority
	host := a
	if i := strings.LastIndex(a, ":"); i > strings.LastIndex(a, "]") {
		host = a[:i]
	}
	if (host != a && (in.hcm.GetStripAnyHostPort() || in.hcm.GetStripMatchingHostPort())) ||
		(strings.HasSuffix(host, ".") && in.hcm.GetStripTrailingHostDot()) {
		return "", false, fmt.Errorf(":authority %q: the connection manager rewrites it before the filters; not modelled", a)
	}
	return a, a != "", nil
}

// path is :path, unless the connection manager's path normalization (normalize_path,
// merge_slashes, path_with_escaped_slashes_action; Istio turns normalize_path on:
// pilot/pkg/networking/core/listener_builder.go) might rewrite it first, which is not
// modelled: then only a path already canonical (no //, . or .. segment, %, \ or other
// character URL canonicalization escapes) is read. A fragment is never modelled.
func (in *authzInput) path() (string, bool, error) {
	p := in.Path
	if strings.Contains(p, "#") {
		return "", false, fmt.Errorf(":path %q: a fragment is not modelled", p)
	}
	h := in.hcm
	escaped := h.GetPathWithEscapedSlashesAction()
	normalizes := h.GetNormalizePath().GetValue() || h.GetMergeSlashes() ||
		(escaped != hcm.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT && escaped != hcm.HttpConnectionManager_KEEP_UNCHANGED)
	if normalizes && !authzCanonicalPath(p) {
		return "", false, fmt.Errorf(":path %q: the connection manager's path normalization would rewrite it first; not modelled", p)
	}
	return p, p != "", nil
}

func authzCanonicalPath(p string) bool {
	p, _, _ = strings.Cut(p, "?")
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return strings.IndexFunc(p, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@/", r))
	}) < 0
}

// remoteIsPeer refuses remote_ip when Envoy's downstream remote address may not be the
// peer's: taken from X-Forwarded-For (use_remote_address off, or trusted hops) or from an
// original IP detection extension.
func (in *authzInput) remoteIsPeer() error {
	h := in.hcm
	if len(h.GetOriginalIpDetectionExtensions()) > 0 {
		return fmt.Errorf("original_ip_detection_extensions are not modelled")
	}
	if _, xff, _ := in.header("x-forwarded-for"); xff && !(h.GetUseRemoteAddress().GetValue() && h.GetXffNumTrustedHops() == 0) {
		return fmt.Errorf("a remote address taken from X-Forwarded-For is not modelled")
	}
	return nil
}
