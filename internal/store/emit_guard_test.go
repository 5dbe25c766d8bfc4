package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// transitionWrite matches a statement that writes a state the event
// catalogue reports: a status (or a subscription's card) set on a
// subscription, invoice, dunning case or refund, or a new subscription,
// invoice or dunning case.
var (
	updateSet     = regexp.MustCompile(`(?is)UPDATE\s+(subscriptions|invoices|dunning_cases|refunds)\s+SET\s+(.*?)(\sWHERE\s|$)`)
	statusOrCard  = regexp.MustCompile(`(?i)(^|[^_\w])(status|payment_method_id)\s*=`)
	insertTracked = regexp.MustCompile(`(?is)INSERT\s+INTO\s+(subscriptions|invoices|dunning_cases)\s*\(`)
)

// emitters are the calls that emit an event (emit.go, events.go).
var emitters = map[string]bool{"Emit": true, "emitIf": true, "emitAll": true, "execEmitting": true,
	"execEmittingIn": true, "emitRefunded": true, "insertInvoices": true}

// noEventWrites are the functions that may write a tracked state without an
// event, each with the reason (none today: a dunning case closed as stopped
// and a recovered case reopened are written beside the invoice's own event).
var noEventWrites = map[string]string{}

// TestEveryTransitionWriteEmits fails when a store function writes a
// subscription's, invoice's, dunning case's or refund's status (or a
// subscription's card), or inserts one of them, without emitting an event:
// a new transition must say what the merchant's systems hear of it (or be
// listed in noEventWrites with the reason). TestEveryTransitionEmitsItsEvent
// (internal/daemon) shows each event is written once, about the right
// object.
func TestEveryTransitionWriteEmits(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			var writes []string
			emits := false
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if n.Kind != token.STRING {
						return true
					}
					s, err := strconv.Unquote(n.Value)
					if err != nil {
						return true
					}
					for _, m := range updateSet.FindAllStringSubmatch(s, -1) {
						if statusOrCard.MatchString(m[2]) {
							writes = append(writes, "UPDATE "+m[1])
						}
					}
					for _, m := range insertTracked.FindAllStringSubmatch(s, -1) {
						writes = append(writes, "INSERT INTO "+m[1])
					}
				case *ast.CallExpr:
					switch fun := n.Fun.(type) {
					case *ast.SelectorExpr:
						emits = emits || emitters[fun.Sel.Name]
					case *ast.Ident:
						emits = emits || emitters[fun.Name]
					}
				}
				return true
			})
			if len(writes) == 0 {
				continue
			}
			checked++
			if _, ok := noEventWrites[fn.Name.Name]; ok {
				continue
			}
			require.True(t, emits, "%s (%s) writes %v without emitting an event: call tx.Emit (or an emit helper of emit.go) for the transition, "+
				"only when the row changed, and add a case to TestEveryTransitionEmitsItsEvent", fn.Name.Name, f, writes)
		}
	}
	require.Greater(t, checked, 10, "the scan found the transition writes")
}
