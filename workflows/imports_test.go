package workflows

import (
	"go/build"
	"strings"
	"testing"
)

// Workflow code must stay pure: it reaches the activities only through
// package wire, so neither the store's driver nor the models' runtime is
// linked into it (the worker links them for the activities).
func TestWorkflowCodeImportsNoIO(t *testing.T) {
	const module = "github.com/forewarm/forewarm/"
	banned := []string{"github.com/ClickHouse/", "github.com/yalue/onnxruntime_go",
		module + "activities", module + "store", module + "models"}
	allowed := []string{module + "activities/wire", module + "store/records",
		module + "models/kind", module + "models/affinity/score", module + "models/lifecycle/rule"}
	seen := map[string]bool{}
	var walk func(path, via string)
	walk = func(path, via string) {
		if seen[path] {
			return
		}
		seen[path] = true
		for _, b := range banned {
			if strings.HasPrefix(path, b) && !isAllowed(path, allowed) {
				t.Errorf("workflow code imports %s (via %s)", path, via)
				return
			}
		}
		if !strings.HasPrefix(path, module) {
			return
		}
		p, err := build.Import(path, ".", 0)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		for _, imp := range p.Imports {
			walk(imp, path)
		}
	}
	walk(module+"workflows", "")
}

func isAllowed(path string, allowed []string) bool {
	for _, a := range allowed {
		if path == a {
			return true
		}
	}
	return false
}
