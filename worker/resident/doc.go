// Package resident holds the services that live in the worker process
// beside the activities rather than as activities: the mirror of the
// recorded arrivals and the watch that wakes router-mode loops (Mirror,
// Watch), the last-known host list in front of the store
// (LastKnownHosts) and the gateway learner that moves affinity
// adjustments from the gateway's requests (GatewayLearner). They use the
// activities' interfaces and types; no workflow calls them.
//
// The watch and the Forecast activity need each other: the watch asks
// the champion model (Champion, which activities.Predictor implements)
// and the activity registers each plan with the watch and reads the
// mirror (activities.PlanWatch, which Watch implements). Each side names
// the other through an interface, so this package imports activities and
// not the reverse.
package resident
