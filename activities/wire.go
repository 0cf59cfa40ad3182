package activities

import (
	"time"

	"github.com/forewarm/forewarm/activities/wire"
)

// What passes between workflows and activities is defined in package wire,
// which workflow code imports without this package's I/O; these aliases
// let activity code and its callers keep naming it here.

type (
	AppProfile          = wire.AppProfile
	Counts              = wire.Counts
	Lease               = wire.Lease
	KeepPlan            = wire.KeepPlan
	HostServing         = wire.HostServing
	HostServed          = wire.HostServed
	ForecastInput       = wire.ForecastInput
	RouterInput         = wire.RouterInput
	ForecastResult      = wire.ForecastResult
	Ahead               = wire.Ahead
	SeedInput           = wire.SeedInput
	SeedResult          = wire.SeedResult
	RankInput           = wire.RankInput
	HostCandidate       = wire.HostCandidate
	RejectedHost        = wire.RejectedHost
	RankResult          = wire.RankResult
	ReserveInput        = wire.ReserveInput
	ReserveResult       = wire.ReserveResult
	ExtendInput         = wire.ExtendInput
	ExtendResult        = wire.ExtendResult
	ShadowInput         = wire.ShadowInput
	ShadowResult        = wire.ShadowResult
	ReleaseInput        = wire.ReleaseInput
	ReleaseResult       = wire.ReleaseResult
	ServeInput          = wire.ServeInput
	ServeResult         = wire.ServeResult
	ClaimInput          = wire.ClaimInput
	ClaimResult         = wire.ClaimResult
	RecordRequestInput  = wire.RecordRequestInput
	RecordRequestResult = wire.RecordRequestResult
	DatasetSummary      = wire.DatasetSummary
	TrainSpec           = wire.TrainSpec
	TrainedModel        = wire.TrainedModel
	DescribeInput       = wire.DescribeInput
	DescribeResult      = wire.DescribeResult
	TrainInput          = wire.TrainInput
	TrainResult         = wire.TrainResult
	PromoteInput        = wire.PromoteInput
	PromoteResult       = wire.PromoteResult
)

// Non-retryable application error types (wire.ErrBadInput and the rest).
const (
	ErrNoModel      = wire.ErrNoModel
	ErrBadInput     = wire.ErrBadInput
	ErrHostRejected = wire.ErrHostRejected
	ErrNoHosts      = wire.ErrNoHosts
	ErrNotEnough    = wire.ErrNotEnough
)

// Why a loop's next decision falls where it does (wire.UntilChange and the
// rest).
const (
	UntilChange = wire.UntilChange
	UntilHold   = wire.UntilHold
	UntilBound  = wire.UntilBound
	UntilEnd    = wire.UntilEnd
)

// MaxCountBins is wire.MaxCountBins.
const MaxCountBins = wire.MaxCountBins

// MaxLeaseBin is wire.MaxLeaseBin.
const MaxLeaseBin = wire.MaxLeaseBin

// MaxLeaseBins is wire.MaxLeaseBins.
func MaxLeaseBins(bin time.Duration) int { return wire.MaxLeaseBins(bin) }

// LeaseLife is wire.LeaseLife.
func LeaseLife(bins int, bin time.Duration) time.Duration { return wire.LeaseLife(bins, bin) }
