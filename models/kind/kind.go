// Package kind names the kinds of model, apart from package models so that
// pure code (the publish rule the training workflow applies) can name them
// without the models' runtime.
package kind

// The one name of each kind, used by the registry rows, the models' own
// metadata and every command.
const (
	Demand   = "demand"
	Affinity = "affinity"
)
