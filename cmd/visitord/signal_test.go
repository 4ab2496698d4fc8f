package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mainEnv, when set, makes the test binary run main() instead of the tests:
// the child process of TestMainExitsZeroOnSignal.
const mainEnv = "VISITORD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Stopped by SIGINT (Ctrl-C) or SIGTERM, the process drains and exits 0, so
// `make run` ends without make's "Error 1" (issue 18).
func TestMainExitsZeroOnSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), mainEnv+"=1",
				"VISITORD_ADDR=127.0.0.1:0", "VISITORD_METRICS_ADDR=127.0.0.1:0", "VISITORD_COOKIE_SECURE=false")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			lines := make(chan string, 256)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var seen []string
			wait := func(want string) {
				t.Helper()
				deadline := time.After(startTimeout)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("stderr ended before %q:\n%s", want, strings.Join(seen, "\n"))
						}
						seen = append(seen, l)
						if strings.Contains(l, want) {
							return
						}
					case <-deadline:
						t.Fatalf("no %q within %s:\n%s", want, startTimeout, strings.Join(seen, "\n"))
					}
				}
			}
			wait(`"msg":"visitord listening"`)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			wait(`"msg":"stopped"`)
			for range lines {
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("after %s the process ended with %v, want exit status 0", sig, err)
			}
		})
	}
}

// `make run` runs the built binary, not `go run` (which exits 1 whenever it is
// interrupted, whatever the program returned), and passes VISITORD_DEMO_ORIGINS.
func TestMakeRun(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var recipe []string
	in := false
	for l := range strings.SplitSeq(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "run:"):
			in = true
		case in && strings.HasPrefix(l, "\t"):
			recipe = append(recipe, l)
		case in:
			in = false
		}
	}
	r := strings.Join(recipe, "\n")
	if r == "" {
		t.Fatal("the Makefile has no run recipe")
	}
	if strings.Contains(r, " run ") || strings.Contains(r, "go run") {
		t.Errorf("make run uses go run, which exits 1 on Ctrl-C:\n%s", r)
	}
	if !strings.Contains(r, "bin/visitord") || !strings.Contains(r, "VISITORD_DEMO_ORIGINS") {
		t.Errorf("make run does not run bin/visitord with VISITORD_DEMO_ORIGINS:\n%s", r)
	}
}
