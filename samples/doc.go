// Package samples holds Forewarm's sample applications, each with its spec
// in specs/: go-model (a Go service that loads a 48 MiB model at start),
// py-heavy (a Python service with heavy imports and an SQLite set-up) and
// trivial (a Go service that answers at once). build.sh builds them into
// bin/; this package's test starts each one the way its spec says and
// checks it. See README.md.
package samples
