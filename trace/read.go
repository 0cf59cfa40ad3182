package trace

import (
	"fmt"
	"strings"
	"time"
)

// Formats accepted by Read.
const (
	FormatAzure2019 = "azure2019"
	FormatEvents    = "events"
)

// Formats lists the formats Read accepts.
var Formats = []string{FormatAzure2019, FormatEvents}

// ReadOptions are the options of every format; those a format does not use
// must be empty.
type ReadOptions struct {
	MemoryPath    string // azure2019 only
	DurationsPath string // azure2019 only
	Start         time.Time
	Bin           time.Duration
}

// Read reads a trace file in the named format.
func Read(format, path string, opt ReadOptions) (*Trace, error) {
	switch format {
	case FormatAzure2019:
		return ReadAzure2019(path, AzureOptions{MemoryPath: opt.MemoryPath, DurationsPath: opt.DurationsPath, Start: opt.Start, Bin: opt.Bin})
	case FormatEvents:
		if opt.MemoryPath != "" || opt.DurationsPath != "" {
			return nil, fmt.Errorf("the events format carries memory and durations per row: memory and durations files apply to azure2019 only")
		}
		return ReadEvents(path, EventsOptions{Start: opt.Start, Bin: opt.Bin})
	default:
		return nil, fmt.Errorf("unknown trace format %q: expected one of %s", format, strings.Join(Formats, ", "))
	}
}
