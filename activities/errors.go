package activities

import (
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/activities/wire"
)

// ErrNoChampion is returned by ModelRegistry.ChampionVersion when no
// champion exists yet.
var ErrNoChampion = errors.New("no champion model published")

// BadInput marks err as a permanent input error (type ErrBadInput), for
// adapters whose errors a retry cannot fix.
func BadInput(err error) error { return nonRetryable(wire.ErrBadInput, err) }

func nonRetryable(kind string, err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), kind, err)
}
