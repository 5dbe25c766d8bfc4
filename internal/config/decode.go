package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decoding works in two passes over yaml.v3's node tree.
//
// The walk (parser.section and friends) follows the Config struct's yaml tags
// and produces a clean copy of the document: only known keys, aliases and merge
// keys resolved, ${ENV} expanded, each value already checked against its Go
// type. Every rejection becomes a FieldError naming the dotted key and line,
// which yaml.v3's own errors ("line 4: field timout not found in type
// config.GatewayConfig") cannot do. Nulls are dropped so the key keeps its
// default.
//
// The clean copy is then decoded into a Config pre-filled with defaults by
// yaml.v3 with KnownFields(true), so the only way a value reaches the struct is
// through the strict decoder.

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[Duration]()
	durListType  = reflect.TypeFor[[]Duration]()
)

// maxWork bounds the nodes the walk visits. Aliases and merge keys let a small
// file describe an exponentially large one ("billion laughs"); a real config
// has a few dozen keys.
const maxWork = 100000

// maxMergeDepth bounds nested "<<" merge keys, which also stops a merge that
// (through an anchor) includes itself.
const maxMergeDepth = 8

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// readDocument parses data into a node tree and returns its root mapping, or
// nil for an empty document (comments only, "---", "~").
func readDocument(data []byte) (*yaml.Node, Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Errors{syntaxError(err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, Errors{syntaxError(err)}
	default:
		return nil, Errors{{
			Message: "the file holds more than one YAML document; put the whole configuration in one",
			Line:    extra.Line,
		}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root := resolveAlias(doc.Content[0])
	if root == nil || isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, Errors{{
			Message: "the configuration must be a YAML mapping of sections (database:, gateway:, …)",
			Line:    root.Line,
		}}
	}
	return root, nil
}

func syntaxError(err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return FieldError{Message: "invalid YAML: " + m[2], Line: line}
	}
	return FieldError{Message: "invalid YAML: " + msg}
}

// strictDecode decodes the clean tree into cfg with unknown fields rejected.
func strictDecode(clean *yaml.Node, cfg *Config) error {
	out, err := yaml.Marshal(clean)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	dec.KnownFields(true)
	return dec.Decode(cfg)
}

type parser struct {
	lookupEnv func(string) (string, bool)
	errs      Errors
	// lines records the line of every key that was set, for later errors.
	lines map[string]int
	// work counts visited nodes against maxWork.
	work int
	// written records the keys whose value was written non-empty, even if it
	// was then rejected, so a key set alongside its *_file is noticed.
	written map[string]bool
	// need says which keys a command uses; the values of the others are not
	// expanded (see Need).
	need Need
}

// spend charges one node against the work budget and reports whether the walk
// may go on; the first overrun is reported once.
func (p *parser) spend(line int) bool {
	p.work++
	if p.work == maxWork+1 {
		p.fail("", "", "the document expands to too many values (aliases or merge keys nested too deeply)", line)
	}
	return p.work <= maxWork
}

func (p *parser) fail(key, value, msg string, line int) {
	p.errs = append(p.errs, FieldError{Key: key, Value: displayValue(key, value), Message: msg, Line: line})
}

type entry struct{ key, value *yaml.Node }

// section checks a mapping against struct type t and returns its clean copy.
func (p *parser) section(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, e := range p.entries(n, path, 0) {
		name := e.key.Value
		key := joinKey(path, name)
		f, ok := fieldByTag(t, name)
		if !ok {
			p.fail(key, "", "unknown key"+suggest(t, name), e.key.Line)
			continue
		}
		p.lines[key] = e.key.Line
		if v := p.value(e.value, f.Type, key); v != nil {
			out.Content = append(out.Content, strNode(name), v)
		}
	}
	return out
}

// entries lists a mapping's key/value pairs with "<<" merge keys applied the
// way yaml.v3 applies them: explicit keys win over merged ones, and among
// several merged mappings the first wins. Duplicate explicit keys are errors.
func (p *parser) entries(n *yaml.Node, path string, depth int) []entry {
	var (
		out    []entry
		merged []entry
		seen   = map[string]int{}
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !p.spend(k.Line) {
			return nil
		}
		if k.Kind != yaml.ScalarNode {
			p.fail(joinKey(path, "?"), "", "keys must be plain names", k.Line)
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			merged = append(merged, p.merge(v, path, depth)...)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.fail(joinKey(path, k.Value), "", fmt.Sprintf("duplicate key (first set on line %d)", first), k.Line)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, entry{k, v})
	}
	for _, e := range merged {
		if _, dup := seen[e.key.Value]; dup {
			continue
		}
		seen[e.key.Value] = e.key.Line
		out = append(out, e)
	}
	return out
}

// merge returns the entries contributed by the value of a "<<" key in the
// mapping at path.
func (p *parser) merge(v *yaml.Node, path string, depth int) []entry {
	key := joinKey(path, "<<")
	if depth >= maxMergeDepth {
		p.fail(key, "", "merge keys nested too deeply", v.Line)
		return nil
	}
	line := v.Line
	v = resolveAlias(v)
	if v == nil {
		p.fail(key, "", "must be a mapping or a list of mappings", line)
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return p.entries(v, path, depth+1)
	case yaml.SequenceNode:
		var out []entry
		for _, item := range v.Content {
			if !p.spend(item.Line) {
				return nil
			}
			itemLine := item.Line
			item = resolveAlias(item)
			if item == nil || item.Kind != yaml.MappingNode {
				p.fail(key, "", "must be a mapping or a list of mappings", itemLine)
				continue
			}
			out = append(out, p.entries(item, path, depth+1)...)
		}
		return out
	}
	p.fail(key, "", "must be a mapping or a list of mappings", line)
	return nil
}

// value checks one value against Go type t and returns its clean copy, or nil
// when the key should keep its default (null, or rejected with an error).
func (p *parser) value(n *yaml.Node, t reflect.Type, key string) *yaml.Node {
	line := n.Line
	n = resolveAlias(n)
	if n == nil || isNull(n) {
		return nil
	}
	if tag := n.ShortTag(); (!strings.HasPrefix(tag, "!!") && tag != "!") || tag == "!!binary" {
		p.fail(key, "", fmt.Sprintf("unsupported YAML tag %s; write ${NAME} to read the environment", tag), line)
		return nil
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.fail(key, "", "must be a mapping of keys, not "+kindName(n), line)
			return nil
		}
		return p.section(n, t, key)
	case t == durListType:
		return p.durationList(n, key)
	}

	what := typeName(t)
	if n.Kind != yaml.ScalarNode {
		p.fail(key, "", fmt.Sprintf("must be %s, not %s", what, kindName(n)), line)
		return nil
	}
	if n.Value != "" {
		p.written[key] = true
	}
	if !p.need.uses(key) && strings.Contains(n.Value, "$") {
		// Not this command's business: its environment may lack the
		// variable, and the key keeps its default.
		return nil
	}
	s, expanded, ok := p.expand(n, key)
	if !ok {
		return nil
	}
	// After expansion the text is re-read as if it had been written plainly,
	// so "port: ${SMTP_PORT}" works whether or not it was quoted.
	tag := n.ShortTag()
	if expanded {
		tag = (&yaml.Node{Kind: yaml.ScalarNode, Value: s}).ShortTag()
	}
	switch {
	case t == durationType:
		if _, err := time.ParseDuration(s); err != nil {
			p.fail(key, s, "must be "+what, line)
			return nil
		}
		return strNode(s)
	case t.Kind() == reflect.String:
		return strNode(s)
	case t.Kind() == reflect.Int:
		var v int
		if tag != "!!int" || decodeScalar(s, tag, &v) != nil {
			p.fail(key, s, "must be "+what, line)
			return nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)}
	case t.Kind() == reflect.Float64:
		var v float64
		if (tag != "!!int" && tag != "!!float") || decodeScalar(s, tag, &v) != nil {
			p.fail(key, s, "must be "+what, line)
			return nil
		}
		return floatNode(v)
	case t.Kind() == reflect.Bool:
		// true or false only: YAML 1.1's yes/no/on/off are a string here,
		// and a typo must not read as false.
		if s != "true" && s != "false" {
			p.fail(key, s, "must be "+what, line)
			return nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: s}
	}
	// Unreachable for the types Config uses; refuse rather than guess.
	p.fail(key, "", "unsupported field type "+t.String(), line)
	return nil
}

func (p *parser) durationList(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.fail(key, "", "must be a list of durations such as [24h, 72h], not "+kindName(n), n.Line)
		return nil
	}
	out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	good := true
	for i, item := range n.Content {
		if !p.spend(item.Line) {
			return nil
		}
		ik := fmt.Sprintf("%s[%d]", key, i)
		line := item.Line
		p.lines[ik] = line
		item = resolveAlias(item)
		if item == nil || item.Kind != yaml.ScalarNode || isNull(item) {
			p.fail(ik, "", "must be "+typeName(durationType), line)
			good = false
			continue
		}
		if !p.need.uses(ik) && strings.Contains(item.Value, "$") {
			good = false
			continue
		}
		s, _, ok := p.expand(item, ik)
		if !ok {
			good = false
			continue
		}
		if _, err := time.ParseDuration(s); err != nil {
			p.fail(ik, s, "must be "+typeName(durationType), line)
			good = false
			continue
		}
		out.Content = append(out.Content, strNode(s))
	}
	if !good {
		return nil
	}
	return out
}

// expand applies ${NAME} expansion to a scalar. It reports whether any
// reference or $$ escape was present, and false in ok after recording errors.
func (p *parser) expand(n *yaml.Node, key string) (s string, expanded, ok bool) {
	if !strings.Contains(n.Value, "$") {
		return n.Value, false, true
	}
	s, problems := expandEnv(n.Value, p.lookupEnv)
	for _, pr := range problems {
		value := n.Value
		if pr.unset {
			// The message names the variable; the raw "${NAME}" adds nothing.
			value = ""
		}
		p.fail(key, value, pr.msg, n.Line)
	}
	return s, true, len(problems) == 0
}

// credentialsHint explains the one variable billingd's own example config
// refers to that no shell sets: systemd sets it for a unit with
// LoadCredential=, so a check run by hand has to name the directory.
const credentialsHint = "; systemd sets it for the service's credentials (LoadCredential=): by hand, run with CREDENTIALS_DIRECTORY=/etc/billingd/credentials"

type envProblem struct {
	msg   string
	unset bool
}

// expandEnv replaces ${NAME} with the variable's value and $$ with $. Any
// other $ is kept as is, so "pa$word" survives. It returns one problem per
// bad reference; the messages never include the value itself, which may be
// secret.
func expandEnv(in string, lookup func(string) (string, bool)) (string, []envProblem) {
	var (
		b        strings.Builder
		problems []envProblem
	)
	for i := 0; i < len(in); {
		c := in[i]
		if c != '$' || i+1 >= len(in) {
			b.WriteByte(c)
			i++
			continue
		}
		switch in[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(in[i+2:], '}')
			if end < 0 {
				problems = append(problems, envProblem{msg: fmt.Sprintf("unterminated ${ at offset %d; write $$ for a literal $", i)})
				return "", problems
			}
			name := in[i+2 : i+2+end]
			i += 2 + end + 1
			if !validEnvName(name) {
				problems = append(problems, envProblem{msg: "invalid ${...} reference; only ${NAME} with letters, digits and _ is supported, and $$ is a literal $"})
				continue
			}
			v, ok := lookup(name)
			if !ok {
				msg := fmt.Sprintf("environment variable %s is not set", name)
				if name == "CREDENTIALS_DIRECTORY" {
					msg += credentialsHint
				}
				problems = append(problems, envProblem{msg: msg, unset: true})
				continue
			}
			b.WriteString(v)
		default:
			b.WriteByte(c)
			i++
		}
	}
	if len(problems) > 0 {
		return "", problems
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func decodeScalar(s, tag string, out any) error {
	return (&yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s}).Decode(out)
}

// resolveAlias follows alias nodes to what they name.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > maxMergeDepth {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

func floatNode(v float64) *yaml.Node {
	var s string
	switch {
	case math.IsNaN(v):
		s = ".nan"
	case math.IsInf(v, 1):
		s = ".inf"
	case math.IsInf(v, -1):
		s = "-.inf"
	default:
		s = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: s}
}

func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "an unsupported node"
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 30s, 5m or 168h"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	}
	return t.String()
}

// fieldByTag finds the struct field whose yaml tag is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for _, f := range reflect.VisibleFields(t) {
		if f.IsExported() && yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return tag
}

// suggest proposes the closest known key for a likely typo.
func suggest(t reflect.Type, name string) string {
	best, bestDist := "", 3
	for _, f := range reflect.VisibleFields(t) {
		n := yamlName(f)
		if !f.IsExported() || n == "" {
			continue
		}
		lower := strings.ToLower(name)
		d := editDistance(lower, n)
		if len(n) >= 3 && len(lower) >= 3 && (strings.HasPrefix(lower, n) || strings.HasPrefix(n, lower)) {
			// "logging" for "log", "retry" for "retry_schedule".
			d = min(d, 2)
		}
		if d < bestDist && d < len(lower) {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
