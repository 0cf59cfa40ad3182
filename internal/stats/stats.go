// Package stats holds the summary statistics the simulator and the live
// report share, so that both compute a figure the same way.
package stats

import "slices"

// Percentile is the q-quantile (0..1) of xs with linear interpolation
// between order statistics (x[k] + f·(x[k+1]-x[k]) at position q·(n-1),
// numpy's default, so figures can be checked with it); 0 for no data. xs
// is not modified.
func Percentile(xs []float64, q float64) float64 {
	return PercentileInPlace(slices.Clone(xs), q)
}

// PercentileInPlace is Percentile sorting s in place (no copy).
func PercentileInPlace(s []float64, q float64) float64 {
	switch len(s) {
	case 0:
		return 0
	case 1:
		return s[0]
	}
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	k := int(pos)
	if k >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(k)
	return s[k] + f*(s[k+1]-s[k])
}
