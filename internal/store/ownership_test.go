package store_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sqlStatement matches a string literal that is an SQL statement.
var sqlStatement = regexp.MustCompile(`^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s)`)

// TestTheStoreOwnsAllSQL keeps SQL in internal/store: no other package's
// code writes a statement or reaches for the store's GORM handle (DB()), so
// every query is where its indexes, dialects and locking are decided.
// internal/invariant is the exception by design: it is the tests' oracle and
// reads the tables itself, so that it never trusts the queries it checks; it
// may only be imported by tests.
func TestTheStoreOwnsAllSQL(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	var problems []string
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || rel == filepath.Join("internal", "store") || rel == filepath.Join("internal", "invariant") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		test := strings.HasSuffix(path, "_test.go")
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/billingd/billingd/internal/invariant" && !test {
				problems = append(problems, rel+": imports internal/invariant outside a test")
			}
		}
		if test {
			return nil
		}
		f, err = parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "DB" && len(n.Args) == 0 {
					problems = append(problems, fset.Position(n.Pos()).String()+": DB() outside internal/store")
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil && sqlStatement.MatchString(s) {
						problems = append(problems, fset.Position(n.Pos()).String()+": SQL outside internal/store")
					}
				}
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, problems, strings.Join(problems, "\n"))
}
