package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// hintRE finds a starter command quoted in a program's text: `starter ...`
// (also bin/starter).
var hintRE = regexp.MustCompile("`(?:bin/)?starter( [^`]*)?`")

var placeholder = regexp.MustCompile(`<[^>]+>`)

var commentBreak = regexp.MustCompile(`\s*\n\s*//\s*`)

// TestEveryHintNamesACommandThatExists runs every starter command that the
// programs' messages, errors and help name (in any Go source of the
// repository but tests) through the CLI's own parser: the command exists,
// every flag it names exists and its arguments are accepted.
func TestEveryHintNamesACommandThatExists(t *testing.T) {
	hints := map[string][]string{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range hintRE.FindAllString(string(b), -1) {
			m = commentBreak.ReplaceAllString(m, " ") // a hint in a comment may wrap
			hints[m] = append(hints[m], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(hints) < 10 {
		t.Fatalf("found only %d hints: the pattern no longer matches how the programs quote commands", len(hints))
	}
	for _, bad := range []string{"`starter model train --wait`", "`starter trian`", "`starter history`", "`starter loop stop extra`"} {
		if checkHint(newRoot(), bad) == nil {
			t.Errorf("the check accepts %s", bad)
		}
	}
	for hint, where := range hints {
		if err := checkHint(newRoot(), hint); err != nil {
			t.Errorf("%s (in %s): %v", hint, strings.Join(where, ", "), err)
		}
	}
}

// checkHint parses a quoted command as the CLI would run it. A trailing
// "…" or "..." stands for the rest of a command; %s, %d and <name> for a
// value; a flag named without its value is a reference to that flag.
func checkHint(root *cobra.Command, hint string) error {
	words := strings.Fields(strings.Trim(hint, "`"))[1:]
	open := false
	if n := len(words); n > 0 && (words[n-1] == "…" || words[n-1] == "...") {
		words, open = words[:n-1], true
	}
	for i, w := range words {
		words[i] = placeholder.ReplaceAllString(strings.NewReplacer("%s", "x", "%d", "1", "%v", "1").Replace(w), "x")
	}
	cmd, rest, err := root.Find(words)
	if err != nil {
		return err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) || strings.HasPrefix(err.Error(), "flag needs an argument") {
			return nil
		}
		return err
	}
	if !cmd.Runnable() && !open {
		return fmt.Errorf("%q is a group of commands, not one: name one of its subcommands", cmd.CommandPath())
	}
	if cmd.Runnable() {
		return cmd.ValidateArgs(cmd.Flags().Args())
	}
	return nil
}
