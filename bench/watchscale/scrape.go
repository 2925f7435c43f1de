package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file scrapes /metrics and counts its series.

// exposition is what one scrape held.
type exposition struct {
	Series int `json:"series"`
	// ByNetns counts the series labelled with each namespace.
	ByNetns map[string]int `json:"-"`
	// Unlabelled counts the series without a netns label (process, Go
	// runtime, build info).
	Unlabelled int `json:"unlabelled"`
	// Values of the unlabelled series by name (go_goroutines ...).
	Values map[string]float64 `json:"-"`
	Bytes  int                `json:"bytes"`
}

// parseExposition counts the series of a text exposition by their netns
// label.
func parseExposition(r io.Reader) (exposition, error) {
	x := exposition{ByNetns: map[string]int{}, Values: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		x.Bytes += len(line) + 1
		if line == "" || line[0] == '#' {
			continue
		}
		x.Series++
		name, rest, labelled := strings.Cut(line, "{")
		if !labelled {
			f := strings.Fields(line)
			if len(f) >= 2 {
				if v, err := strconv.ParseFloat(f[1], 64); err == nil {
					x.Values[f[0]] = v
				}
			}
			x.Unlabelled++
			continue
		}
		_ = name
		ns, ok := labelValue(rest, "netns")
		if !ok {
			x.Unlabelled++
			continue
		}
		x.ByNetns[ns]++
	}
	return x, sc.Err()
}

// labelValue finds label k in the label text after '{' (values quoted,
// with \" and \\ escapes).
func labelValue(s, k string) (string, bool) {
	for {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return "", false
		}
		key := strings.TrimLeft(s[:eq], ", ")
		var b strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", false
		}
		if key == k {
			return b.String(), true
		}
		s = s[i+1:]
		if strings.HasPrefix(s, "}") {
			return "", false
		}
	}
}

// scrape fetches /metrics once and times it to the last byte.
func scrape(ctx context.Context, c *http.Client, addr string) (time.Duration, exposition, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, exposition{}, err
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, exposition{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if err != nil {
		return 0, exposition{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, exposition{}, fmt.Errorf("/metrics: %s", resp.Status)
	}
	x, err := parseExposition(strings.NewReader(string(body)))
	return d, x, err
}
