// health-check judges Kubernetes objects the way Flux and Argo CD do, with their own libraries:
// Flux's kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute) and Argo CD's health assessment
// (gitops-engine's health.GetResourceHealth with Argo CD's Lua resource overrides, util/lua), so that
// tests can assert the verdicts of the real tools.
//
// Input, one JSON object per line on stdin:
//
//	{"object": {...}, "luaScript": "<Lua source, or empty>", "useOpenLibs": false}
//
// Output, one JSON object per input line on stdout:
//
//	{"kstatus": {"status": "Current", "message": "..."},
//	 "argocd": {"status": "Healthy", "message": "...", "error": ""}}
//
// A line that cannot be judged gets {"error": "..."}; the program never stops on a bad line.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/argoproj/gitops-engine/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
)

type request struct {
	Object      json.RawMessage `json:"object"`
	LuaScript   string          `json:"luaScript"`
	UseOpenLibs bool            `json:"useOpenLibs"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

type response struct {
	Kstatus *verdict `json:"kstatus,omitempty"`
	Argocd  *verdict `json:"argocd,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func kstatus(obj *unstructured.Unstructured) *verdict {
	res, err := status.Compute(obj)
	if err != nil {
		return &verdict{Status: string(status.UnknownStatus), Error: err.Error()}
	}
	return &verdict{Status: string(res.Status), Message: res.Message}
}

// argocd assesses obj as Argo CD's application controller does (controller/health.go): the script is a
// resource customization (resource.customizations.health.<group>_<kind> in argocd-cm) for the object's
// kind, with its useOpenLibs flag; without a script only Argo CD's built-in checks apply.
func argocd(obj *unstructured.Unstructured, script string, useOpenLibs bool) *verdict {
	var overrides lua.ResourceHealthOverrides
	if script != "" {
		key := lua.GetConfigMapKey(obj.GroupVersionKind())
		overrides = lua.ResourceHealthOverrides{key: appv1.ResourceOverride{HealthLua: script, UseOpenLibs: useOpenLibs}}
	}
	hs, err := health.GetResourceHealth(obj, overrides)
	v := &verdict{}
	if hs != nil {
		v.Status, v.Message = string(hs.Status), hs.Message
	}
	if err != nil {
		v.Error = err.Error()
	}
	return v
}

func judge(line []byte) (out response) {
	defer func() {
		if r := recover(); r != nil {
			out = response{Error: fmt.Sprintf("panic: %v", r)}
		}
	}()
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return response{Error: "invalid input: " + err.Error()}
	}
	// Numbers as the API server's decoder gives them (int64 where integral), which kstatus relies on.
	var object map[string]any
	if err := utiljson.Unmarshal(req.Object, &object); err != nil || object == nil {
		return response{Error: fmt.Sprintf("invalid input: object is not a JSON object (%v)", err)}
	}
	obj := &unstructured.Unstructured{Object: object}
	return response{Kstatus: kstatus(obj.DeepCopy()), Argocd: argocd(obj, req.LuaScript, req.UseOpenLibs)}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		if err := enc.Encode(judge(in.Bytes())); err != nil {
			fmt.Fprintln(os.Stderr, "health-check:", err)
			os.Exit(1)
		}
		if err := out.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, "health-check:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "health-check:", err)
		os.Exit(1)
	}
}
