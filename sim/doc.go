// Package sim replays a trace bin by bin through a preparation policy and
// accounts, exactly and deterministically, for cold requests and wasted
// memory-time. It is how Forewarm's policy is compared with what operators
// already run: no preparation (reactive), a fixed keep-alive, the hybrid
// histogram policy of Shahrad et al. (USENIX ATC 2020), our demand model,
// and a clairvoyant oracle.
//
// # Time
//
// The trace's bins are the only clock. Bins [0, EvalStart) are the
// training part: policies observe them (to warm up state or, for our
// model, to train on a copy cut at EvalStart) but nothing is counted there.
// Bins [EvalStart, Bins) are the evaluation range. A policy decides at the
// start of bin b, knowing the counts of bins < b only, which applications
// hold a preparation during bin b (Policy.Plan), and then sees bin b's
// counts (Policy.Observe). Only the oracle sees the future, on purpose.
//
// # Accounting (the same for every policy)
//
// For application a with memory m MB and bin b of w seconds in the
// evaluation range, with c requests and live = "a holds a preparation
// during b" as the policy planned it:
//
//   - live and c > 0: the c requests are warm; the bin's memory-time is
//     used, not wasted.
//   - not live and c > 0: the c requests are all cold (a request is warm
//     iff its application has a live preparation in its bin). The instance
//     that serves them is not charged to any policy: every policy pays it
//     alike, and the reactive policy's waste is therefore exactly zero.
//   - live and c = 0: m × w MB·s wasted.
//   - not live and c = 0: nothing.
//
// So the bin in which a request arrives never counts as waste, whichever
// way it was served; keep-alive and prepared time in bins without requests
// always does. Wasted memory-time is reported in MB·s and as a percentage
// of the fixed 10-minute keep-alive's waste on the same range (= 100%).
//
// A preparation is "made" when an application is live in bin b but held
// nothing in bin b-1 (neither a live preparation nor an instance serving
// requests): a fresh reservation, validated by one shadow request. Holding
// on after an instance served bin b-1 (a keep-alive) is not a new
// preparation. For the first evaluation bin, "held" means served requests
// in the last training bin. Our policy counts its leases itself, as
// production makes them: a lease renewed within a continuous hold, or
// prepared right after a request claimed the previous one, is a new
// preparation with its own shadow request.
//
// Applications' memory is trace.App.MemoryMB, or trace.DefaultMemoryMB
// (170 MB, about the Azure 2019 median) when the trace does not know it.
//
// # Metrics
//
// Per application, cold-start rate = cold requests / requests over the
// evaluation range; the report gives its 75th percentile across the
// applications with at least one request in the range (linear
// interpolation between order statistics) and the overall rate (all cold
// requests / all requests), the paper's two figures. Preparations made and
// the shadow requests they imply (one each) complete the cost side.
//
// # Use
//
// Run replays one trace through one Policy. Evaluate runs every policy
// family with its sweep (keep-alive minutes, histogram range, threshold)
// and normalises the waste; Tune picks the setting that meets a waste
// budget or a cold-start target; WriteTable, WriteMarkdown, WriteCSV,
// WriteJSON, WritePerAppCSV and WritePlot render a Report. Our policy reads
// the demand model through DemandForecaster, behind a ForecastCache so a
// threshold sweep asks the model once per bin. `starter eval` and
// `starter tune` are the command-line front ends.
package sim
