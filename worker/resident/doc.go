// Package resident holds the services that live in the worker process
// beside the activities rather than as activities: the last-known host
// list in front of the store (LastKnownHosts) and the gateway learner that
// moves affinity adjustments from the gateway's requests (GatewayLearner).
// They use the activities' interfaces and types; no workflow calls them.
package resident
