// Package stackcheck holds the foundation's integration tests: each proves
// that one real service of the local stack is usable from Go. The package
// has no code of its own.
package stackcheck
