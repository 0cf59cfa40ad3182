package trace

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// DefaultMemoryMB is the memory to assume for an application whose size is
// unknown (App.MemoryMB == 0): about the median allocated memory of the
// Azure Functions 2019 trace.
const DefaultMemoryMB = 170

// DefaultReadRatio is the read share to assume when a source says nothing
// about I/O (the Azure trace has no I/O figures): balanced.
const DefaultReadRatio = 0.5

// AzureStart is the first minute of the Azure Functions 2019 trace (day 1).
var AzureStart = time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)

// MemoryOrDefault is the application's memory, DefaultMemoryMB when unknown.
func (a *App) MemoryOrDefault() float64 {
	if a.MemoryMB > 0 {
		return a.MemoryMB
	}
	return DefaultMemoryMB
}

// AzureOptions tunes ReadAzure2019.
type AzureOptions struct {
	MemoryPath    string        // optional app memory file (HashApp, AverageAllocatedMb)
	DurationsPath string        // optional function durations file (HashFunction, Average ms)
	Start         time.Time     // start of minute 1; zero = AzureStart
	Bin           time.Duration // width each trace minute maps onto; zero = 1 minute
}

// ReadAzure2019 reads an Azure Functions 2019 invocation file: one row per
// function, one column per minute. Both header styles are accepted, by
// name: the original `HashOwner,HashApp,HashFunction,Trigger,1,…,1440` and
// the `HashFunction,HashOwner,HashApp,minute_1,…,minute_1440` of published
// samples. The application ID is HashFunction (the unit that cold-starts);
// rows repeating a HashFunction are summed. Memory comes from the memory
// file by HashApp, durations from the durations file by HashFunction.
// ReadRatio is DefaultReadRatio: the trace has no I/O figures.
//
// The whole input is validated; any problem returns an *InputError and no
// trace.
func ReadAzure2019(invPath string, opt AzureOptions) (*Trace, error) {
	if opt.Start.IsZero() {
		opt.Start = AzureStart
	}
	if opt.Bin == 0 {
		opt.Bin = time.Minute
	}
	if opt.Bin < 0 {
		return nil, fmt.Errorf("bin width %v: must be positive", opt.Bin)
	}
	var memory, durations map[string]float64
	var err error
	if opt.MemoryPath != "" {
		if memory, err = readKeyed(opt.MemoryPath, "HashApp", "AverageAllocatedMb", "memory in MB"); err != nil {
			return nil, err
		}
	}
	if opt.DurationsPath != "" {
		if durations, err = readKeyed(opt.DurationsPath, "HashFunction", "Average", "a duration in ms"); err != nil {
			return nil, err
		}
	}

	c, err := openCSV(invPath)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	fnCol, appCol, minuteCols, err := azureHeader(c)
	if err != nil {
		return nil, err
	}
	bins := len(minuteCols)
	apps := make(map[string]*App)
	for {
		rec, line, err := c.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		id := strings.TrimSpace(rec[fnCol])
		if id == "" {
			return nil, c.fieldErr(line, fnCol, "empty function ID")
		}
		a := apps[id]
		if a == nil {
			a = &App{ID: id, ReadRatio: DefaultReadRatio, Counts: make([]uint32, bins)}
			appKey := id
			if appCol >= 0 {
				appKey = strings.TrimSpace(rec[appCol])
			}
			a.MemoryMB = memory[appKey]
			a.DurationMS = durations[id]
			apps[id] = a
		}
		for b, i := range minuteCols {
			n, err := c.count(rec, line, i)
			if err != nil {
				return nil, err
			}
			// Rows of one function add up; a sum that wraps is refused.
			if sum := uint64(a.Counts[b]) + uint64(n); sum > uint64(^uint32(0)) {
				return nil, c.fieldErr(line, i, "function %s's count adds up to %d over its rows, more than %d", id, sum, ^uint32(0))
			}
			a.Counts[b] += n
		}
	}
	if len(apps) == 0 {
		return nil, inputErr(invPath, 2, 0, "", "no function rows after the header")
	}
	return newTrace(opt.Start, opt.Bin, bins, apps), nil
}

// azureHeader finds the function, app and minute columns of either style.
func azureHeader(c *csvFile) (fnCol, appCol int, minuteCols []int, err error) {
	fnCol, appCol = -1, -1
	for i, h := range c.header {
		name := strings.ToLower(h)
		switch name {
		case "hashfunction":
			fnCol = i
			continue
		case "hashapp":
			appCol = i
			continue
		case "hashowner", "trigger":
			continue
		}
		n, convErr := strconv.Atoi(strings.TrimPrefix(name, "minute_"))
		if convErr != nil || n < 1 {
			return 0, 0, nil, inputErr(c.path, 1, i+1, h, "unexpected column for the azure2019 format (expected HashOwner, HashApp, HashFunction, Trigger and minute columns 1…1440 or minute_1…minute_1440)")
		}
		if n != len(minuteCols)+1 {
			return 0, 0, nil, inputErr(c.path, 1, i+1, h, "minute column out of sequence: expected minute %d", len(minuteCols)+1)
		}
		minuteCols = append(minuteCols, i)
	}
	if fnCol < 0 {
		return 0, 0, nil, inputErr(c.path, 1, 0, "", "header has no HashFunction column: is this an azure2019 invocations file?")
	}
	if len(minuteCols) == 0 {
		return 0, 0, nil, inputErr(c.path, 1, 0, "", "header has no minute columns (1…1440 or minute_1…minute_1440): is this an azure2019 invocations file?")
	}
	return fnCol, appCol, minuteCols, nil
}

// readKeyed reads one numeric column of a side file, keyed by another
// column; the first row of a repeated key wins.
func readKeyed(path, keyName, valueName, what string) (map[string]float64, error) {
	c, err := openCSV(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	k, v := c.index(keyName), c.index(valueName)
	if k < 0 || v < 0 {
		return nil, inputErr(path, 1, 0, "", "header needs columns %s and %s", keyName, valueName)
	}
	out := make(map[string]float64)
	for {
		rec, line, err := c.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		key := strings.TrimSpace(rec[k])
		if key == "" {
			return nil, c.fieldErr(line, k, "empty key")
		}
		x, ok, err := c.number(rec, line, v, what)
		if err != nil {
			return nil, err
		}
		if _, seen := out[key]; ok && !seen {
			out[key] = x
		}
	}
	if len(out) == 0 {
		return nil, inputErr(path, 2, 0, "", "no rows after the header")
	}
	return out, nil
}
