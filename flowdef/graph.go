package flowdef

// Cycles returns the dependency cycles of a graph of n nodes in which node
// i depends on the nodes deps(i), in that order. It searches depth first,
// from node 0 up and through each node's dependencies in order, and
// reports a cycle when it meets a node it is still inside. Each cycle is
// the list of its nodes in the order met, starting where the search
// entered it: cycle[k] depends on cycle[k+1], and the last node on the
// first. A cycle sharing a node with one already reported is left out, so
// every node is in at most one cycle. deps must return indexes below n.
//
// This is the one cycle search of the project: Validate reports the first
// cycle, qflowgen every one with its positions, and runtime/goals the first
// of a decomposition.
func Cycles(n int, deps func(i int) []int) [][]int {
	const (
		white = iota // not visited
		grey         // on the search path
		black        // done
	)
	color := make([]int, n)
	inCycle := make([]bool, n)
	var path []int
	var out [][]int
	var visit func(i int)
	visit = func(i int) {
		color[i] = grey
		path = append(path, i)
		for _, j := range deps(i) {
			switch color[j] {
			case grey:
				start := len(path) - 1
				for path[start] != j {
					start--
				}
				cyc := append([]int(nil), path[start:]...)
				fresh := true
				for _, k := range cyc {
					fresh = fresh && !inCycle[k]
				}
				if fresh {
					for _, k := range cyc {
						inCycle[k] = true
					}
					out = append(out, cyc)
				}
			case white:
				visit(j)
			}
		}
		path = path[:len(path)-1]
		color[i] = black
	}
	for i := range n {
		if color[i] == white {
			visit(i)
		}
	}
	return out
}
