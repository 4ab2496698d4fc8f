package main

import "testing"

func TestTokenOf(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{name: "visitord's answer", body: `{"tracked":true,"token":"v1.abc_DEF-123.sig"}`, want: "v1.abc_DEF-123.sig"},
		{name: "spaced JSON", body: `{"tracked": true, "token": "v1.x.y"}`, want: "v1.x.y"},
		{name: "escaped token", body: `{"token":"a\/b"}`, want: "a/b"},
		{name: "untracked", body: `{"tracked":false,"reason":"dnt"}`},
		{name: "no body"},
		{name: "not JSON", body: `token`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokenOf([]byte(tc.body)); got != tc.want {
				t.Errorf("tokenOf(%s) = %q, want %q", tc.body, got, tc.want)
			}
		})
	}
}
