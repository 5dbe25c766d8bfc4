package config

import (
	"errors"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile(examplePath); err == nil {
		f.Add(example)
	}
	seeds := []string{
		"",
		"~",
		"gateway:\n  secret_key: ${WOOSHPAY_SECRET_KEY}\n  timeout: 30s\n",
		"gateway:\n  timout: 1s\n  concurrency: many\n",
		"dunning:\n  retry_schedule: [24h, 72h, \"${X}\"]\n",
		"log: &a\n  <<: *a\n",
		"a: &a [*a]\nlog:\n  <<: [*a, {level: info}]\n",
		"gateway:\n  secret_key_file: ../../etc/passwd\n  secret_key: $${\n",
		"schedule:\n  billing: TZ=UTC\n  timezone: Local\n",
		"gateway: {rate_limit: .nan, concurrency: 0x10}\n",
		"mail:\n  username: \"${A}$$${B}${\"\n",
		"- a\n- b\n",
		"log: {}\n---\nlog: {}\n",
		"gateway:\n  secret_key: !vault x\n",
		"? [a, b]\n: c\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	env := envMap(map[string]string{
		"WOOSHPAY_SECRET_KEY": testSecretKey,
		"X":                   "1h",
		"A":                   "a",
	})
	// Fuzzed *_file paths must not touch the real file system (a FIFO or
	// device could block), so reads are served from memory.
	o := Options{
		LookupEnv: env,
		ReadFile: func(path string) ([]byte, error) {
			if len(path)%2 == 0 {
				return []byte("content\n"), nil
			}
			return nil, os.ErrNotExist
		},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := o.Parse(data, "/etc/billingd")
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Parse returned %T %v, want non-empty Errors", err, err)
			}
			_ = err.Error()
			return
		}
		if cfg == nil {
			t.Fatal("nil config without error")
		}
		if verr := cfg.Validate(); verr != nil {
			var errs Errors
			if !errors.As(verr, &errs) || len(errs) == 0 {
				t.Fatalf("Validate returned %T %v, want non-empty Errors", verr, verr)
			}
		}
		_ = cfg.String()
		if _, err := o.ParseAndValidate(data, "/etc/billingd"); err != nil {
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("ParseAndValidate returned %T", err)
			}
		}
	})
}
