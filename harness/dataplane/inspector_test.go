package dataplane

import (
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/assert"
)

// A filter_disabled predicate this package cannot evaluate counts as disabled wherever
// it stands, under a not_match too: no stand-in claims a TLS inspector Envoy may
// not have run.
func TestAPredicateTheStandInCannotReadDisablesTheFilter(t *testing.T) {
	ports := func(start, end int32) *listener.ListenerFilterChainMatchPredicate {
		return &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: start, End: end}}}
	}
	unknown := &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_AnyMatch{AnyMatch: true}}
	not := func(p *listener.ListenerFilterChainMatchPredicate) *listener.ListenerFilterChainMatchPredicate {
		return &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: p}}
	}
	or := func(ps ...*listener.ListenerFilterChainMatchPredicate) *listener.ListenerFilterChainMatchPredicate {
		return &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_OrMatch{
			OrMatch: &listener.ListenerFilterChainMatchPredicate_MatchSet{Rules: ps}}}
	}
	assert.False(t, disabledFor(nil, 443))
	assert.True(t, disabledFor(ports(443, 444), 443))
	assert.False(t, disabledFor(ports(80, 81), 443))
	assert.True(t, disabledFor(or(ports(80, 81), ports(443, 444)), 443))
	assert.False(t, disabledFor(not(ports(443, 444)), 443))
	assert.True(t, disabledFor(not(ports(80, 81)), 443))
	assert.True(t, disabledFor(unknown, 443))
	assert.True(t, disabledFor(not(unknown), 443), "not of what cannot be read is unknown too")
	assert.True(t, disabledFor(or(ports(80, 81), not(unknown)), 443))
}
