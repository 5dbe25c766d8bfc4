package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store/storetest"
)

const eventsDoc = "../../docs/events.md"

// docSnippet is the fenced block of lang that follows the marker
// <!-- verify:lang --> in docs/events.md.
func docSnippet(t *testing.T, doc, lang string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)<!-- verify:" + lang + " -->\\s*```" + lang + "\n(.*?)```")
	m := re.FindStringSubmatch(doc)
	require.NotNil(t, m, "docs/events.md has a ```%s block after <!-- verify:%s -->", lang, lang)
	return m[1]
}

// snippetCase is one delivery a snippet must judge.
type snippetCase struct {
	Name   string `json:"name"`
	Header string `json:"header"`
	Body   string `json:"body"`
	Secret string `json:"secret"`
	Accept bool   `json:"-"`
}

// goHarness runs the Go snippet's verify on every case of the file named by
// its argument and prints "accepted" or "rejected" per line.
const goHarness = `package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var cases []struct{ Header, Body, Secret string }
	if err := json.Unmarshal(raw, &cases); err != nil {
		panic(err)
	}
	for _, c := range cases {
		if err := verify(c.Header, []byte(c.Body), c.Secret, 5*time.Minute); err != nil {
			fmt.Println("rejected")
		} else {
			fmt.Println("accepted")
		}
	}
}
`

// pyHarness does the same for the Python snippet (appended to it).
const pyHarness = `
import json as _json, sys as _sys
for _c in _json.load(open(_sys.argv[1])):
    print("accepted" if verify(_c["header"], _c["body"].encode(), _c["secret"], 300) else "rejected")
`

// TestEventsDocsVerificationSnippets runs the Go and Python receivers of
// docs/events.md against a real delivery, captured by a receiving server
// from the daemon's events worker, signed during a secret rotation (two v1):
// each must accept it under either secret and refuse it with a changed
// body, another secret, or a t older than the tolerance.
func TestEventsDocsVerificationSnippets(t *testing.T) {
	raw, err := os.ReadFile(eventsDoc)
	require.NoError(t, err)
	doc := string(raw)
	const previous = "whsec_events_previous_0123456789"
	sink := newEventSink(t)
	// The clock starts now: the signature's t is checked against the
	// snippets' own clocks.
	b := daemontest.New(t, daemontest.Options{NoMail: true, Start: time.Now().UTC().Truncate(time.Second), Configure: func(c *config.Config) {
		c.Events.URL, c.Events.Secret, c.Events.SecretPrevious = sink.srv.URL+"/hooks", config.Secret(testEventsSecret), config.Secret(previous)
	}})
	b.Seed(t, storetest.Subscription{Reference: "docs-1"})
	emitFor(t, b, models.EventSubscriptionPaused, "docs-1")
	_, err = b.D.DeliverEvents(context.Background())
	require.NoError(t, err)
	sink.mu.Lock()
	require.NotEmpty(t, sink.bodies)
	body, header := string(sink.bodies[0]), sink.headers[0].Get(events.SignatureHeader)
	sink.mu.Unlock()
	require.Equal(t, 2, strings.Count(header, "v1="), "signed with both secrets: %s", header)
	tampered := strings.Replace(body, `"status":"active"`, `"status":"canceled"`, 1)
	require.NotEqual(t, body, tampered)
	cases := []snippetCase{
		{Name: "real delivery", Header: header, Body: body, Secret: testEventsSecret, Accept: true},
		{Name: "real delivery, previous secret", Header: header, Body: body, Secret: previous, Accept: true},
		{Name: "tampered body", Header: header, Body: tampered, Secret: testEventsSecret},
		{Name: "another secret", Header: header, Body: body, Secret: "whsec_someone_else_0123456789"},
		{Name: "t an hour old", Header: events.Sign(time.Now().Add(-time.Hour), []byte(body), testEventsSecret), Body: body, Secret: testEventsSecret},
		{Name: "no v1", Header: strings.Split(header, ",")[0], Body: body, Secret: testEventsSecret},
	}
	dir := t.TempDir()
	casesFile := filepath.Join(dir, "cases.json")
	casesJSON, err := json.Marshal(cases)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(casesFile, casesJSON, 0o600))
	check := func(t *testing.T, out []byte) {
		t.Helper()
		lines := strings.Fields(string(out))
		require.Len(t, lines, len(cases), "one verdict per case:\n%s", out)
		for i, c := range cases {
			want := "rejected"
			if c.Accept {
				want = "accepted"
			}
			require.Equal(t, want, lines[i], c.Name)
		}
	}

	t.Run("go", func(t *testing.T) {
		snippet := docSnippet(t, doc, "go")
		snippet = regexp.MustCompile(`(?m)^package \w+`).ReplaceAllString(snippet, "package main")
		src := filepath.Join(dir, "go")
		require.NoError(t, os.MkdirAll(src, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(src, "verify.go"), []byte(snippet), 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(src, "harness.go"), []byte(goHarness), 0o600))
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "run", "verify.go", "harness.go", casesFile)
		cmd.Dir = src
		// Standard library only: no module, no network.
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on", "GOTOOLCHAIN=local", "GOPROXY=off")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "go run the snippet: %s", stderr.String())
		check(t, out)
	})
	t.Run("python", func(t *testing.T) {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("python3 is not installed: the Python snippet of docs/events.md is not checked")
		}
		snippet := docSnippet(t, doc, "python")
		var stderr bytes.Buffer
		cmd := exec.Command(py, "-I", "-c", snippet+pyHarness, casesFile)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "python3 the snippet: %s", stderr.String())
		check(t, out)
	})
	t.Run("worked example", func(t *testing.T) {
		want := events.Sign(time.Unix(1772442000, 0), []byte(`{"id":"evt_2al5fkwa5odyqotxjh32","type":"invoice.created"}`), "whsec_example_0123456789")
		require.Contains(t, doc, "Billingd-Signature: "+want)
	})
}

// TestEventsDocsCatalogue checks docs/events.md's catalogue against the
// code: every type of models.EventTypes has a section with a sample of that
// type and object type, and each sample's fields are the fields of the
// admin API view it is a snapshot of — none unknown (a renamed field fails
// here), every field the view always sends present.
func TestEventsDocsCatalogue(t *testing.T) {
	raw, err := os.ReadFile(eventsDoc)
	require.NoError(t, err)
	doc := string(raw)
	views := map[models.EventObjectType]reflect.Type{
		models.EventObjectSubscription: reflect.TypeOf(ops.Subscription{}),
		models.EventObjectInvoice:      reflect.TypeOf(ops.Invoice{}),
		models.EventObjectDunningCase:  reflect.TypeOf(ops.DunningCase{}),
	}
	extra := map[string]reflect.Type{
		"invoice": reflect.TypeOf(ops.Invoice{}), "refund": reflect.TypeOf(ops.Refund{}), "previous_card": reflect.TypeOf(ops.Card{}),
	}
	for _, typ := range models.EventTypes {
		t.Run(string(typ), func(t *testing.T) {
			re := regexp.MustCompile("(?s)\n### " + regexp.QuoteMeta(string(typ)) + "\n.*?```json\n(.*?)```")
			m := re.FindStringSubmatch(doc)
			require.NotNil(t, m, "docs/events.md has a section ### %s with a sample", typ)
			var sample map[string]any
			require.NoError(t, json.Unmarshal([]byte(m[1]), &sample))
			require.Equal(t, string(typ), sample["type"])
			require.Equal(t, string(typ.ObjectType()), sample["object_type"])
			require.Regexp(t, `^evt_`, sample["id"])
			keys := make([]string, 0, len(sample))
			for k := range sample {
				keys = append(keys, k)
			}
			require.ElementsMatch(t, []string{"id", "type", "created_at", "object_type", "subscription", "data"}, keys)
			data, ok := sample["data"].(map[string]any)
			require.True(t, ok, "data is an object")
			for k, v := range data {
				view := extra[k]
				if k == "object" {
					view = views[typ.ObjectType()]
				}
				require.NotNil(t, view, "data.%s is not a part of any payload", k)
				requireFieldsOf(t, "data."+k, v, view)
			}
		})
	}
}

// requireFieldsOf checks that v (decoded JSON) has the fields of the view
// type typ: no field typ lacks, every field typ always sends.
func requireFieldsOf(t *testing.T, path string, v any, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	obj, ok := v.(map[string]any)
	if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(time.Time{}) {
		return
	}
	require.True(t, ok, "%s is an object", path)
	fields := map[string]reflect.StructField{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
		if !strings.Contains(opts, "omitempty") {
			require.Contains(t, obj, name, "%s lacks %s, which %s always sends", path, name, typ.Name())
		}
	}
	for k, val := range obj {
		f, ok := fields[k]
		require.True(t, ok, "%s.%s is not a field of %s", path, k, typ.Name())
		requireFieldsOf(t, path+"."+k, val, f.Type)
	}
}
