package trace

import (
	"fmt"
	"strconv"
	"strings"
)

// InputError is a problem with an input file, located as precisely as the
// input allows: Line and Column are 1-based (Column counts CSV fields), 0
// when they do not apply (an unreadable path, an empty file).
type InputError struct {
	File   string
	Line   int
	Column int
	Field  string // the column's header name, when known
	Msg    string
}

func (e *InputError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "column %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func inputErr(file string, line, col int, field, format string, a ...any) *InputError {
	return &InputError{File: file, Line: line, Column: col, Field: field, Msg: fmt.Sprintf(format, a...)}
}
