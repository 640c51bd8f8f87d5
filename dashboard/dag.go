package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"strings"

	"github.com/quantumflow/qflow/internal/flowview"
	"github.com/quantumflow/qflow/runtime"
)

// nodeState is what a DAG node shows besides its slug: a status (the CSS
// class) and a short second line.
type nodeState struct {
	Status string
	Note   string
}

const (
	nodeW, nodeH = 168, 48
	colGap       = 64
	rowGap       = 18
	margin       = 12
)

// dagSVG draws def left to right, one column per layer (see
// flowview.Layers), an edge per dependency. Every text is escaped.
func dagSVG(def *runtime.FlowDef, states map[string]nodeState) template.HTML {
	layers := flowview.Layers(def)
	tallest := 0
	for _, l := range layers {
		tallest = max(tallest, len(l))
	}
	width := 2*margin + len(layers)*nodeW + (len(layers)-1)*colGap
	height := 2*margin + tallest*nodeH + (tallest-1)*rowGap
	type pos struct{ x, y int }
	at := map[string]pos{}
	for c, l := range layers {
		// Center each column vertically.
		colH := len(l)*nodeH + (len(l)-1)*rowGap
		y0 := margin + (height-2*margin-colH)/2
		for r, slug := range l {
			at[slug] = pos{margin + c*(nodeW+colGap), y0 + r*(nodeH+rowGap)}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="dag" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		width, height, width, height, html.EscapeString("steps of flow "+def.Slug))
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>`)
	for _, s := range def.Steps {
		to := at[s.Slug]
		for _, d := range s.DependsOn {
			from, ok := at[d]
			if !ok {
				continue
			}
			x1, y1 := from.x+nodeW, from.y+nodeH/2
			x2, y2 := to.x-2, to.y+nodeH/2
			mid := (x1 + x2) / 2
			class := "edge"
			if s.Map {
				class += " each"
			}
			fmt.Fprintf(&b, `<path class="%s" d="M%d,%d C%d,%d %d,%d %d,%d" marker-end="url(#arrow)"/>`, class, x1, y1, mid, y1, mid, y2, x2, y2)
		}
	}
	for _, s := range def.Steps {
		p := at[s.Slug]
		st := states[s.Slug]
		status := st.Status
		if status == "" {
			status = "none"
		}
		slug := html.EscapeString(s.Slug)
		fmt.Fprintf(&b, `<a href="#step-%s"><g class="node st-%s" id="node-%s" data-step="%s" data-status="%s">`, slug, html.EscapeString(status), slug, slug, html.EscapeString(status))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" rx="9"/>`, p.x, p.y, nodeW, nodeH)
		if s.Map {
			fmt.Fprintf(&b, `<rect class="inner" x="%d" y="%d" width="%d" height="%d" rx="6"/>`, p.x+4, p.y+4, nodeW-8, nodeH-8)
		}
		name := s.Slug
		if len(name) > 20 {
			name = name[:19] + "…"
		}
		fmt.Fprintf(&b, `<text class="slug" x="%d" y="%d">%s</text>`, p.x+14, p.y+20, html.EscapeString(name))
		fmt.Fprintf(&b, `<text class="note" x="%d" y="%d">%s</text>`, p.x+14, p.y+37, html.EscapeString(st.Note))
		b.WriteString(`</g></a>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
