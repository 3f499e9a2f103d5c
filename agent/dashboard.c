/*
 * dashboard.c: the page served at GET / (see dashboard_render in api.h).
 *
 * One self-contained HTML document: CSS and a small script inline, no
 * external assets, so it works on an air-gapped fleet and cannot leak the
 * operator's browsing to a CDN. The script polls /v1/status every 2 s (one
 * request at a time) and redraws: members, plans with a progress bar per
 * target state, and what needs a human (targets awaiting approval, needing
 * review or failed, and paused plans). Every value from the agent is placed
 * with textContent, never parsed as HTML. When the agent wants a bearer
 * token (--http-token), the page asks for it once and keeps it in the tab's
 * sessionStorage.
 */
#include "api.h"

#include "gg_error.h"

#include <stdlib.h>
#include <string.h>

static const char s_head[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>gaggle: ";

static const char s_body_open[] =
    "</title>\n"
    "<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\n"
    "header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;"
    "align-items:baseline;flex-wrap:wrap}\n"
    "header h1{font-size:18px;margin:0}\n"
    "header code{color:#b8c2d6;font-size:12px}\n"
    "#status{margin-left:auto;font-size:12px;color:#b8c2d6}\n"
    "#status.bad{color:#ff9b8f}\n"
    "main{padding:12px 20px;display:grid;gap:16px}\n"
    "section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px}\n"
    "h2{font-size:15px;margin:0 0 8px}\n"
    "table{border-collapse:collapse;width:100%}\n"
    "th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f4;"
    "vertical-align:top}\n"
    "th{font-weight:600;color:#5a6478;font-size:12px}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".bar{display:flex;height:14px;min-width:160px;background:#eef0f4;border-radius:3px;"
    "overflow:hidden}\n"
    ".bar span{display:block;height:100%}\n"
    ".s-pending{background:#c5cad6}.s-awaiting_approval{background:#b48ef0}\n"
    ".s-running{background:#4a90e2}.s-retry_wait{background:#f5a623}\n"
    ".s-succeeded{background:#3cb371}.s-skipped{background:#8fd3a8}\n"
    ".s-needs_review{background:#e8b500}.s-failed{background:#e0473c}\n"
    ".s-cancelled{background:#7a8294}\n"
    ".tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px;color:#fff}\n"
    ".m-alive{background:#3cb371}.m-suspect{background:#f5a623}"
    ".m-dead{background:#e0473c}.m-left{background:#7a8294}\n"
    ".p-active{background:#4a90e2}.p-paused{background:#f5a623}"
    ".p-completed{background:#3cb371}.p-cancelled{background:#7a8294}\n"
    ".legend span{margin-right:10px;font-size:12px}\n"
    ".legend i{display:inline-block;width:10px;height:10px;margin-right:3px;"
    "border-radius:2px}\n"
    ".muted{color:#7a8294}\n"
    "#auth{display:none}\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<header><h1>gaggle node ";

static const char s_after_name[] = "</h1><code>";

static const char s_after_id[] =
    "</code><span id=\"status\">loading&hellip;</span></header>\n"
    "<main>\n"
    "<section id=\"auth\"><h2>This agent needs a token</h2>\n"
    "<form id=\"authform\"><input id=\"token\" type=\"password\" size=\"40\" "
    "placeholder=\"bearer token (--http-token)\" autocomplete=\"off\"> "
    "<button>Use</button></form></section>\n"
    "<section><h2>What needs a human</h2><div id=\"human\" class=\"muted\">&hellip;</div>"
    "</section>\n"
    "<section><h2>Plans</h2><div class=\"legend\" id=\"legend\"></div>"
    "<div id=\"plans\" class=\"muted\">&hellip;</div></section>\n"
    "<section><h2>Members</h2><div id=\"members\" class=\"muted\">&hellip;</div></section>\n"
    "<p class=\"muted\" style=\"padding:0 20px\"><a href=\"/v1/status\">status JSON</a> "
    "&middot; <a href=\"/metrics\">metrics</a> &middot; <a href=\"/healthz\">health</a></p>\n"
    "</main>\n"
    "<script>\n"
    "'use strict';\n"
    "const STATES=['pending','awaiting_approval','running','retry_wait','succeeded',"
    "'skipped','needs_review','failed','cancelled'];\n"
    "const TERMINAL=new Set(['succeeded','skipped','needs_review','failed','cancelled']);\n"
    "const $=id=>document.getElementById(id);\n"
    "function el(tag,cls,text){const e=document.createElement(tag);if(cls)e.className=cls;"
    "if(text!==undefined&&text!==null)e.textContent=String(text);return e;}\n"
    "function row(cells){const tr=el('tr');for(const c of cells){const td=el('td');"
    "if(c instanceof Node)td.appendChild(c);else td.textContent=c==null?'':String(c);"
    "tr.appendChild(td);}return tr;}\n"
    "function table(head,rows){const t=el('table'),h=el('tr');"
    "for(const x of head)h.appendChild(el('th',null,x));t.appendChild(h);"
    "for(const r of rows)t.appendChild(r);return t;}\n"
    "function fill(id,node){const e=$(id);e.replaceChildren(node);e.className='';}\n"
    "function empty(id,text){const e=$(id);e.replaceChildren();e.textContent=text;"
    "e.className='muted';}\n"
    "function bar(p){const b=el('div','bar'),total=p.total||0;"
    "for(const s of STATES){const n=(p.counts&&p.counts[s])||0;if(!n||!total)continue;"
    "const seg=el('span','s-'+s);seg.style.width=(100*n/total)+'%';seg.title=s+': '+n;"
    "b.appendChild(seg);}return b;}\n"
    "function countsText(p){const parts=[];for(const s of STATES){const n=(p.counts&&"
    "p.counts[s])||0;if(n)parts.push(s+' '+n);}return parts.join(', ')||'no targets';}\n"
    "function legend(){const l=$('legend');if(l.childNodes.length)return;"
    "for(const s of STATES){const x=el('span');x.appendChild(el('i','s-'+s));"
    "x.appendChild(document.createTextNode(s));l.appendChild(x);}}\n"
    "function render(d){\n"
    " legend();\n"
    " const members=d.members||[];\n"
    " if(!members.length)empty('members','no members yet');\n"
    " else fill('members',table(['name','state','address','incarnation','note'],"
    "members.map(m=>row([m.name,el('span','tag m-'+m.state,m.state),m.address,"
    "m.incarnation,[m.self?'this node':'',m.draining?'draining':''].filter(Boolean)"
    ".join(', ')]))));\n"
    " const plans=d.plans||[];\n"
    " if(!plans.length)empty('plans','no plans');\n"
    " else fill('plans',table(['plan','id','state','progress','done','targets'],"
    "plans.map(p=>{let done=0;for(const s of STATES)if(TERMINAL.has(s))"
    "done+=(p.counts&&p.counts[s])||0;"
    "return row([p.name,(p.id||'').slice(0,12),el('span','tag p-'+p.state,p.state+"
    "(p.paused_reason?' ('+p.paused_reason+')':'')),bar(p),done+'/'+p.total,"
    "countsText(p)]);})));\n"
    " const human=[];\n"
    " for(const p of plans)if(p.state==='paused')human.push(row([p.name,'(whole plan)',"
    "'paused'+(p.paused_reason?' by '+p.paused_reason:''),'gaggle plan resume '+"
    "(p.id||'').slice(0,12)]));\n"
    " for(const t of d.needs_human||[])human.push(row([t.plan,t.ref,t.state,t.error||'']));\n"
    " if(!human.length)empty('human','nothing: every target is moving or settled');\n"
    " else{const t=table(['plan','target','state','detail'],human);const box=el('div');"
    "box.appendChild(t);const more=(d.needs_human_total||0)-(d.needs_human||[]).length;"
    "if(more>0)box.appendChild(el('p','muted','and '+more+' more (gaggle plan show ID)'));"
    "fill('human',box);}\n"
    "}\n"
    "function setStatus(text,bad){const s=$('status');s.textContent=text;"
    "s.className=bad?'bad':'';}\n"
    "async function poll(){\n"
    " const headers={};const tok=sessionStorage.getItem('gaggle-token');\n"
    " if(tok)headers['Authorization']='Bearer '+tok;\n"
    " try{\n"
    "  const r=await fetch('/v1/status',{headers:headers,cache:'no-store'});\n"
    "  if(r.status===401){$('auth').style.display='block';"
    "setStatus('this agent needs a bearer token',true);return;}\n"
    "  if(!r.ok)throw new Error('HTTP '+r.status);\n"
    "  $('auth').style.display='none';\n"
    "  render(await r.json());\n"
    "  setStatus('updated '+new Date().toLocaleTimeString());\n"
    " }catch(e){setStatus('cannot reach the agent: '+e.message,true);}\n"
    " finally{setTimeout(poll,2000);}\n"
    "}\n"
    "$('authform').addEventListener('submit',ev=>{ev.preventDefault();"
    "sessionStorage.setItem('gaggle-token',$('token').value);$('token').value='';});\n"
    "poll();\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

/* Bytes text takes once HTML-escaped. */
static size_t s_escaped_len(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&': n += 5; break;
        case '<':
        case '>': n += 4; break;
        case '"':
        case '\'': n += 6; break;
        default: n++;
        }
    }
    return n;
}

static char *s_escape_into(char *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#x27;"; break;
        default: *out++ = *p; continue;
        }
        size_t n = strlen(rep);
        memcpy(out, rep, n);
        out += n;
    }
    return out;
}

static char *s_copy(char *out, const char *text, size_t n)
{
    memcpy(out, text, n);
    return out + n;
}

int dashboard_render(const char *node_name, const char *node_id, char **html, size_t *len)
{
    const char *name = node_name ? node_name : "";
    const char *id = node_id ? node_id : "";
    size_t name_len = s_escaped_len(name), id_len = s_escaped_len(id);
    size_t total = (sizeof s_head - 1) + name_len + (sizeof s_body_open - 1) + name_len +
                   (sizeof s_after_name - 1) + id_len + (sizeof s_after_id - 1);
    *html = NULL;
    if (len)
        *len = 0;
    char *page = malloc(total + 1);
    if (!page)
        return GG_ENOMEM;
    char *p = page;
    p = s_copy(p, s_head, sizeof s_head - 1);
    p = s_escape_into(p, name);
    p = s_copy(p, s_body_open, sizeof s_body_open - 1);
    p = s_escape_into(p, name);
    p = s_copy(p, s_after_name, sizeof s_after_name - 1);
    p = s_escape_into(p, id);
    p = s_copy(p, s_after_id, sizeof s_after_id - 1);
    *p = '\0';
    *html = page;
    if (len)
        *len = (size_t) (p - page);
    return 0;
}
