// Package sim replays a trace bin by bin through a preparation policy and
// accounts, exactly and deterministically, for cold requests and wasted
// memory-time. It is how Forewarm's policy is compared with what operators
// already run: no preparation (reactive), a fixed keep-alive, each
// application's own best keep-alive, the hybrid histogram policy of Shahrad
// et al. (USENIX ATC 2020), our demand model deciding through package
// policy, and a clairvoyant oracle.
//
// # Time and ranges
//
// The trace's bins are the only clock. An evaluation cuts the trace in
// time order into three ranges: train, select and test (Ranges). Policies
// are played from bin 0 so that every one warms up on what precedes a range
// (histograms fill, keep-alives see the last requests, our model is trained
// on the bins before the range only), and are counted on one range at a
// time. A policy decides at the start of bin b, knowing the counts of bins
// < b only, which applications hold an instance during bin b (Policy.Plan),
// and then sees bin b's counts (Policy.Observe). Only the oracle sees the
// future, on purpose.
//
// # Choosing settings without looking at the result
//
// Every family is swept (keep-alive 1-240 minutes, histogram range 10
// minutes-8 hours, our threshold and the per-application keep-alive's
// price of a cold start over 21 values each). Each setting is run on the
// select range and on the test range. Per family, the setting with the
// lowest p75 cold-start rate among those that waste at most the budget
// (by default the 10-minute keep-alive's waste on the select range) is
// chosen on the select range alone (ties: the lower overall cold rate,
// then the lower waste); that setting's test-range row is the family's
// reported result (Summary.Selected). Whole curves on the test range are
// kept for reading, and each family is read off at fixed wastes (25% to
// 200%) as a staircase of measured settings: at each waste, the lowest p75
// of any of its settings that wasted no more on the test range, and which
// setting that was (never a point interpolated between two settings), so
// curves can be compared at matched waste. Our model is trained twice: on
// the bins before the select range (to choose) and on those before the
// test range (to report), with the same settings.
//
// # Accounting (the same for every policy)
//
// For application a with memory m MB and bin b of w seconds in the counted
// range, with c requests and live = "a holds an instance during b":
//
//   - live and c > 0: the c requests are warm; the bin's memory-time is
//     used, not wasted.
//   - not live and c > 0: cold. By default (ColdFirst, the paper's rule) one
//     request is cold — the first — and the instance its cold start brings
//     up serves the rest of the bin; ColdAll counts all c. Both are
//     reported. The instance is not charged to any policy.
//   - live and c = 0: m × w MB·s of idle memory.
//   - not live and c = 0: nothing.
//
// An application holds an instance after a bin in which it was live or
// served requests. A bin that is live while nothing was held in the bin
// before is a fresh preparation: a reservation validated by a shadow
// request, charged m × PrepareSeconds MB·s of waste on top of the idle
// memory (Options.PrepareSeconds; the same charge for every policy, so a
// policy that prepares constantly pays for it). Keeping the instance that
// served, or extending a lease in place, is not a preparation. For the
// first counted bin, "held" means served requests in the bin before.
// Wasted memory-time is reported in MB·s and as a percentage of the fixed
// 10-minute keep-alive's on the same range (= 100%).
//
// Applications' memory is trace.App.MemoryMB, or trace.DefaultMemoryMB
// (170 MB, about the Azure 2019 median) when the trace does not know it.
//
// # Metrics
//
// Per application, cold-start rate = cold requests / requests over the
// range; the report gives its 75th percentile across the applications with
// at least one request in the range (linear interpolation between order
// statistics) with a 90% bootstrap interval over applications (1,000
// resamples, fixed seed), and the overall rate (all cold requests / all
// requests), the paper's two figures, with the mean of the per-application
// rates beside them (every application weighs the same). Our chosen
// setting's p75 is compared with every other family's chosen one as a
// difference with a 90% paired bootstrap interval: each resample draws the
// applications once and takes both policies' p75 on that same draw. Preparations (= shadow requests) and
// preparations per request complete the cost side. The test model's
// forecasts are scored against what happened, overall and per application
// group (busy, periodic, sparse; models.GroupOf on each application's
// history before the range), with a reliability table.
//
// # Use
//
// Run replays one trace through one Policy over one range. Evaluate runs
// every family with its sweep over both ranges, chooses, and reads the
// curves off; Tune picks a setting for a goal from rows; WriteTable,
// WriteMarkdown, WriteCSV, WriteJSON, WritePerAppCSV and WritePlot render a
// Report. Our policy (Ours) reads the demand model through
// DemandForecaster, behind a ForecastCache so a sweep asks the model once
// per bin, and decides through package policy exactly as the prediction
// loop does (the workflows package tests that they decide alike, bin by
// bin). `starter eval` and `starter tune` are the command-line front ends.
package sim
