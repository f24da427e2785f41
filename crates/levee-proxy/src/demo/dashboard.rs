//! `GET /`: a single self-contained page that shows the demo backends and the
//! cluster's endpoints, with buttons to switch backend modes. It only calls the
//! admin API, so everything it does can also be done with curl.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

pub(super) fn router() -> Router {
    Router::new().route("/", get(|| async { Html(PAGE) }))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>levee demo</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
button{margin-right:4px}.mode{font-weight:bold}
</style></head><body>
<h1>levee demo</h1>
<p>Switch a backend's mode and watch what clients see and how the cluster's endpoints fare.
Send your own traffic with <code>curl</code> through the gateway address shown in <a href="/status">/status</a>.</p>
<h2>What a client sees</h2>
<p>The demo sends 20 requests a second through the gateway. Last <span id="n">0</span> requests:
<span id="traffic"></span></p>
<h2>Demo backends</h2>
<table id="backends"><tr><th>name</th><th>address</th><th>mode</th><th>requests received</th><th>switch to</th></tr></table>
<h2>Cluster endpoints</h2>
<p id="panic"></p>
<table id="endpoints"><tr><th>cluster</th><th>endpoint</th><th>state</th><th>why</th><th>in flight</th><th>EWMA latency (ms)</th></tr></table>
<h2>Recent events</h2>
<table id="events"><tr><th>time</th><th>endpoint</th><th>change</th><th>reason</th></tr></table>
<script>
const MODES=["healthy","crashed","hung","slow","failing"];
function row(cells){const tr=document.createElement("tr");for(const c of cells){const td=document.createElement("td");if(c instanceof Node)td.appendChild(c);else td.textContent=c;tr.appendChild(td);}return tr;}
function clear(t){while(t.rows.length>1)t.deleteRow(1);}
async function setMode(name,mode){await fetch(`/demo/backends/${name}/${mode}`,{method:"POST"});refresh();}
async function refresh(){
  try{
    const backends=await (await fetch("/demo/backends")).json();
    const bt=document.getElementById("backends");clear(bt);
    for(const b of backends){const buttons=document.createElement("span");
      for(const m of MODES){const btn=document.createElement("button");btn.textContent=m;btn.onclick=()=>setMode(b.name,m);buttons.appendChild(btn);}
      const mode=document.createElement("span");mode.className="mode";mode.textContent=b.mode;
      bt.appendChild(row([b.name,b.address,mode,b.requests_received,buttons]));}
    const t=await (await fetch("/demo/traffic")).json();
    document.getElementById("n").textContent=t.requests;
    document.getElementById("traffic").textContent=`${t.ok} ok, ${t.server_errors} 5xx, ${t.timeouts} timed out, ${t.connection_errors} connection errors, slowest ${t.max_latency_ms.toFixed(0)} ms`;
    const status=await (await fetch("/status")).json();
    const et=document.getElementById("endpoints");clear(et);
    for(const c of status.clusters)for(const e of c.endpoints){const st=document.createElement("span");st.className="mode";st.textContent=e.state;
      et.appendChild(row([c.name,e.address,st,e.reason||"",e.in_flight,e.ewma_latency_ms.toFixed(2)]));}
    document.getElementById("panic").textContent=status.clusters.some(c=>c.panic)?"PANIC: too few endpoints available, spreading over all of them":"";
    const events=await (await fetch("/events?limit=15")).json();
    const vt=document.getElementById("events");clear(vt);
    for(const ev of events.reverse())vt.appendChild(row([ev.at.substring(11,23),ev.endpoint||ev.cluster,`${ev.from} \u2192 ${ev.to}`,ev.reason]));
  }catch(e){console.log(e);}
}
refresh();setInterval(refresh,1000);
</script></body></html>
"#;
