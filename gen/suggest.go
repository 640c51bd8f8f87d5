package gen

import "strings"

// suggest returns the candidate closest to name when it is close enough to
// be a likely typo, else "". Names are compared without regard to case, by
// edit distance counting a swap of two neighbouring letters as one edit
// (stpe is one edit from step): none for names under 3 bytes (which would
// be one edit from any other short name), 1 under 5 bytes, 2 otherwise. Of
// equally close candidates the first wins.
func suggest(name string, candidates []string) string {
	limit := 2
	switch {
	case len(name) < 3:
		limit = 0
	case len(name) < 5:
		limit = 1
	}
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
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
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
