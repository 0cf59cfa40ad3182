package config

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// EnvDefaults reads typed flag defaults from the environment. A value that
// does not parse is not ignored: Err names the first one, and a program
// refuses to start with it (exit status 2), as it would a bad flag.
type EnvDefaults struct{ Err error }

func (e *EnvDefaults) bad(key, s, want string) {
	if e.Err == nil {
		e.Err = fmt.Errorf("$%s=%q is not %s", key, s, want)
	}
}

// Int64 is $key as a whole number, or def when unset.
func (e *EnvDefaults) Int64(key string, def int64) int64 {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		e.bad(key, s, "a whole number")
	}
	return v
}

// Int is $key as a whole number, or def when unset.
func (e *EnvDefaults) Int(key string, def int) int { return int(e.Int64(key, int64(def))) }

// Float is $key as a number, or def when unset.
func (e *EnvDefaults) Float(key string, def float64) float64 {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		e.bad(key, s, "a number")
	}
	return v
}

// Duration is $key as a duration such as 30s or 5m, or def when unset.
func (e *EnvDefaults) Duration(key string, def time.Duration) time.Duration {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		e.bad(key, s, "a duration (e.g. 30s, 5m)")
	}
	return v
}

// Bool is $key as true or false, or def when unset.
func (e *EnvDefaults) Bool(key string, def bool) bool {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		e.bad(key, s, "true or false")
	}
	return v
}
