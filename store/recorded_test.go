package store_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
)

// A retried record asks which requests are already stored: exactly those
// of the app, near the given time, are found, whether their IDs are UUIDs
// or not.
func TestRecordedRequestIDs(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	a, b, other, missing := uuid.NewString(), "req-b", uuid.NewString(), "req-missing"
	if err := s.RecordRequests(ctx, []store.Request{
		{Time: at, RequestID: a, App: "app-1", Outcome: records.OutcomeCold},
		{Time: at.Add(30 * time.Second), RequestID: b, App: "app-1", Outcome: records.OutcomeWarm},
		{Time: at, RequestID: other, App: "app-2", Outcome: records.OutcomeCold},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.RecordedRequestIDs(ctx, "app-1", at, []string{a, b, other, missing})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[a] || !got[b] {
		t.Errorf("recorded = %v, want exactly %s and %s (not app-2's, not the missing one)", got, a, b)
	}
	if got, err := s.RecordedRequestIDs(ctx, "app-1", at.Add(time.Hour), []string{a}); err != nil || len(got) != 0 {
		t.Errorf("an hour later: %v, %v; want none (only a minute around the time is searched)", got, err)
	}
}
