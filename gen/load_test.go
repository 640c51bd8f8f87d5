package gen

import (
	"go/token"
	"testing"

	"golang.org/x/tools/go/packages"
)

func TestPackageErrorPosition(t *testing.T) {
	for _, tc := range []struct {
		pos  string
		want token.Position
	}{
		{"/a/b.go:3:7", token.Position{Filename: "/a/b.go", Line: 3, Column: 7}},
		{"/a/b.go:3", token.Position{Filename: "/a/b.go", Line: 3}},
		{"/a/b.go", token.Position{Filename: "/a/b.go"}},
		{"c:/x.go:12:1", token.Position{Filename: "c:/x.go", Line: 12, Column: 1}},
		{"/a/b.go:x:7", token.Position{Filename: "/a/b.go:x", Line: 7}},
		{"/a/b.go:-3", token.Position{Filename: "/a/b.go:-3"}},
		{"", token.Position{}},
	} {
		got := packageError(packages.Error{Pos: tc.pos, Msg: "m"})
		if got.Pos != tc.want || got.Msg != "m" {
			t.Errorf("packageError(%q) = %+v, want position %+v", tc.pos, got, tc.want)
		}
	}
}
