package workflows

// Steering a loop: the state query, the updates and the signals.

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
)

// handlers registers the state query and the updates. Updates take
// their payloads raw and decode them strictly, like the signals: the
// validator refuses a malformed one, naming the field.
func (l *loop) handlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryState, func(StateQuery) (LoopStatus, error) {
		return l.status(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePolicy,
		func(ctx workflow.Context, raw converter.RawValue) (PolicyUpdateResult, error) {
			in, err := decodePayload[PolicyUpdate](raw)
			if err != nil {
				return PolicyUpdateResult{}, updateRefused(UpdatePolicy, err)
			}
			return l.updatePolicy(ctx, in)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, raw converter.RawValue) error {
			in, err := decodePayload[PolicyUpdate](raw)
			if err != nil {
				return updateRefused(UpdatePolicy, err)
			}
			if err := l.validatePolicy(ctx, in); err != nil {
				return updateRefused(UpdatePolicy, err)
			}
			return nil
		}}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateClaim,
		func(ctx workflow.Context, raw converter.RawValue) (ClaimUpdateResult, error) {
			in, err := decodePayload[ClaimUpdate](raw)
			if err != nil {
				return ClaimUpdateResult{}, updateRefused(UpdateClaim, err)
			}
			return l.claim(ctx, in)
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, raw converter.RawValue) error {
			if _, err := decodePayload[ClaimUpdate](raw); err != nil {
				return updateRefused(UpdateClaim, err)
			}
			return nil
		}})
}

// updateRefused is the error an update is rejected with (validators must
// not change the loop's state, so the rejection itself says why).
func updateRefused(name string, err error) error {
	return fmt.Errorf("%s update refused: %w", name, err)
}

// signals returns the function that adds every signal channel of the loop
// to a selector. Each payload is decoded strictly (see decodeSignal): a
// malformed one is refused and recorded, never left to block the loop.
func (l *loop) signals(ctx workflow.Context) func(workflow.Selector) {
	thresholdCh := workflow.GetSignalChannel(ctx, SignalThreshold)
	policyCh := workflow.GetSignalChannel(ctx, SignalPolicy)
	observationCh := workflow.GetSignalChannel(ctx, SignalObservation)
	stopCh := workflow.GetSignalChannel(ctx, SignalStop)
	wakeCh := workflow.GetSignalChannel(ctx, SignalWake)
	return func(s workflow.Selector) {
		s.AddReceive(thresholdCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[ThresholdSignal](ctx, c); err != nil {
				l.refuse(SignalThreshold, err)
			} else {
				l.onThreshold(ctx, sig)
			}
		})
		s.AddReceive(policyCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[PolicySignal](ctx, c); err != nil {
				l.refuse(SignalPolicy, err)
			} else {
				l.onPolicy(ctx, sig)
			}
		})
		s.AddReceive(observationCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[ObservationSignal](ctx, c); err != nil {
				l.refuse(SignalObservation, err)
			} else {
				l.observe(ctx, sig)
			}
		})
		s.AddReceive(wakeCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[WakeSignal](ctx, c); err != nil {
				l.refuse(SignalWake, err)
			} else {
				l.onWake(ctx, sig)
			}
		})
		s.AddReceive(stopCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[StopSignal](ctx, c); err != nil {
				l.refuse(SignalStop, err)
			} else {
				l.stop = &sig
			}
		})
	}
}

// refuse records a signal or update refused for its payload.
func (l *loop) refuse(name string, err error) {
	l.Stats.Refusals++
	l.LastError = fmt.Sprintf("%s signal refused: %v", name, err)
	l.log.Warn("signal refused", "signal", name, "error", err)
}

func (l *loop) onThreshold(ctx workflow.Context, sig ThresholdSignal) {
	if err := ValidateThreshold(sig.Threshold); err != nil {
		l.refuse(SignalThreshold, err)
		return
	}
	l.Policy.Threshold = sig.Threshold
	l.wakeEarly = true
	if l.kick != nil {
		l.kick()
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

func (l *loop) validate(p Policy) error {
	return p.ValidateFor(l.Bin)
}

func (l *loop) onPolicy(ctx workflow.Context, sig PolicySignal) {
	if sig.Change == (PolicyChange{}) {
		l.refuse(SignalPolicy, errors.New("the change names no field"))
		return
	}
	p := sig.Change.Apply(l.Policy)
	if err := l.validate(p); err != nil {
		l.refuse(SignalPolicy, err)
		return
	}
	l.Policy = p
	l.wakeEarly = true
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

func (l *loop) validatePolicy(_ workflow.Context, in PolicyUpdate) error {
	if in.Change == (PolicyChange{}) {
		return errors.New("the change names no field")
	}
	return l.validate(in.Change.Apply(l.Policy))
}

func (l *loop) updatePolicy(ctx workflow.Context, in PolicyUpdate) (PolicyUpdateResult, error) {
	prev := l.Policy
	l.Policy = in.Change.Apply(l.Policy)
	if l.kick != nil {
		l.kick()
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
	return PolicyUpdateResult{Previous: prev, Current: l.Policy}, nil
}
