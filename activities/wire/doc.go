// Package wire is what passes between Forewarm's workflows and their
// activities: every activity's input and result, the leases and profiles
// they carry, the error type names workflows match on and the bounds both
// sides plan with. It does no I/O, so workflow code imports it without the
// store's driver or the models' runtime; package activities, which
// implements the activities, and every caller name them here.
package wire
