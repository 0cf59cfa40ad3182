package store

import (
	"context"
	"fmt"
	"time"
)

// Claims let concurrent loads of the same content agree on one writer
// without transactions: each attempt writes a claim, waits claimSettle
// (longer than an insert takes to become visible) and reads the claims;
// the live claim with the smallest load ID (the earliest attempt) proceeds,
// the others report a duplicate. A claim lives claimTTL after its last
// refresh (every batch), so a crashed load blocks nobody for long.
const (
	claimSettle = 250 * time.Millisecond
	claimTTL    = 2 * time.Minute

	claimHeld     = "claimed"
	claimReleased = "released"
)

// claim registers loadID for key and returns the attempt that may load it
// (loadID itself, another live claim, or a load that committed meanwhile).
func (s *Store) claim(ctx context.Context, key, loadID string) (holder string, committed bool, err error) {
	if err := s.refreshClaim(ctx, key, loadID); err != nil {
		return "", false, err
	}
	select {
	case <-time.After(claimSettle):
	case <-ctx.Done():
		s.releaseClaim(context.WithoutCancel(ctx), key, loadID)
		return "", false, ctx.Err()
	}
	err = s.query(ctx, func(rows scanner) error {
		if err := rows.Scan(&holder); err != nil {
			return err
		}
		return nil
	}, `SELECT load_id FROM load_claims WHERE content_key = ?
			GROUP BY load_id HAVING argMax(state, at_ns) = 'claimed' AND max(at_ns) >= ?
			ORDER BY load_id LIMIT 1`, key, nanos(time.Now().Add(-claimTTL)))
	if err != nil {
		s.releaseClaim(context.WithoutCancel(ctx), key, loadID)
		return "", false, fmt.Errorf("read load claims: %w", err)
	}
	if holder != loadID {
		s.releaseClaim(context.WithoutCancel(ctx), key, loadID)
	}
	if holder == "" { // our own claim is not visible: should not happen
		return "", false, fmt.Errorf("load %s: its claim is not visible after %v", loadID, claimSettle)
	}
	// A load that committed while we claimed wins over every claim.
	if done, err := s.committedLoad(ctx, key); err != nil {
		return "", false, err
	} else if done != "" {
		if holder == loadID {
			s.releaseClaim(context.WithoutCancel(ctx), key, loadID)
		}
		return done, true, nil
	}
	return holder, false, nil
}

func (s *Store) refreshClaim(ctx context.Context, key, loadID string) error {
	return s.writeClaim(ctx, key, loadID, claimHeld)
}

// releaseClaim is best effort: an unreleased claim expires after claimTTL.
func (s *Store) releaseClaim(ctx context.Context, key, loadID string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.writeClaim(ctx, key, loadID, claimReleased); err != nil {
		s.log.Warn("cannot release a load claim (it expires by itself)", "load", loadID, "err", err)
	}
}

func (s *Store) writeClaim(ctx context.Context, key, loadID, state string) error {
	return s.insert(ctx, "load_claims", "content_key, load_id, state, at_ns", 1, func(int) []any {
		return []any{key, loadID, state, nanos(time.Now())}
	})
}
